"""HTTP: thin handlers that turn requests into calls on the services and answers back."""
