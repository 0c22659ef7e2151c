"""The htmx web pages (French UI) for reception, biologists, prescribers and patients."""
