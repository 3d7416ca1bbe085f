"""A small Django shop whose jobs and tasks run on unijob: see docs/frameworks/django.md."""
