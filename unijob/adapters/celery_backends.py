"""``celery -A unijob.adapters.celery_backends:NAME worker`` serves the configured celery backend
``NAME``, whatever its name: the module holds nothing else, so no name can clash (in
``unijob.adapters.celery_worker`` a backend named ``celery`` or ``worker`` would find the module's
own names instead)."""


def __getattr__(backend: str) -> object:
    if backend.startswith("__"):
        raise AttributeError(backend)
    from unijob.adapters.celery_worker import backend_app

    return backend_app(backend)
