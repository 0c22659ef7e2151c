"""Notifications: FHIR R4 rest-hook Subscriptions, e-mails to prescribers and notices to
patients, queued in the transaction of the change they announce (an outbox) and delivered
after commit, with retries."""
