"""The TLS context every connection to a tenant's server uses: built once
per process, even when a worker's first conversations ask for it at once."""

import ssl
import threading
import time

from servers import connections


def test_conversations_asking_at_once_build_one_context(monkeypatch):
    connections._tls_context.cache_clear()
    built = []
    create = ssl.create_default_context

    def slow_create(*args, **kwargs):
        built.append(threading.get_ident())
        time.sleep(0.05)  # loading the CA store: the others ask meanwhile
        return create(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", slow_create)
    start = threading.Barrier(32)
    contexts = []

    def conversation():
        start.wait()
        contexts.append(connections.tls_context(True))

    threads = [threading.Thread(target=conversation) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert len(contexts) == 32 and len({id(c) for c in contexts}) == 1
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
    connections._tls_context.cache_clear()


def test_a_starting_worker_builds_the_context_before_its_first_conversation():
    from config.celery import prepare_links

    connections._tls_context.cache_clear()
    prepare_links()  # connected to Celery's worker_init
    assert connections._tls_context.cache_info().currsize == 1
