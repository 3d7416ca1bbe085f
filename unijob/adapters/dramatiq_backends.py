"""``dramatiq unijob.adapters.dramatiq_backends:NAME`` serves the configured backend ``NAME``,
whatever its name: the module holds nothing else, so no name can clash (in
``unijob.adapters.dramatiq_worker`` a backend named ``dramatiq`` or ``worker`` would find the
module's own import instead)."""


def __getattr__(backend: str) -> object:
    if backend.startswith("__"):
        raise AttributeError(backend)
    from unijob.adapters.dramatiq_worker import backend_broker

    return backend_broker(backend)
