"""{{ service }}: a REST API created from the platform's python-fastapi golden path."""
