#!/usr/bin/env python
"""The shop's manage.py: ``python manage.py unijob_worker`` starts a worker for its jobs and tasks."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djshop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
