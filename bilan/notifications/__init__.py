"""Notifications: FHIR R4 rest-hook Subscriptions and e-mails to prescribers, queued in the
transaction of the change they announce (an outbox) and delivered after commit, with retries."""
