"""The Procfile's commands as the tests and benchmarks run them: the
dispatch worker is a pool of threads with a bounded pool of database
sessions, set from the environment."""

import sys

from config.processes import procfile_command, with_option


def test_the_dispatch_worker_is_a_pool_of_threads_with_a_few_database_sessions():
    argv, variables = procfile_command("dispatch", {})
    assert argv[:3] == [sys.executable, "-m", "celery"]
    assert with_option(argv, "-P", "x") != argv and argv[argv.index("-P") + 1] == "threads"
    assert argv[argv.index("--concurrency") + 1] == "200"
    assert variables == {"DB_POOL_SIZE": "7"}


def test_the_environment_sets_the_conversations_and_the_sessions():
    argv, variables = procfile_command("dispatch", {"DISPATCH_CONVERSATIONS": "50", "DISPATCH_DB_SESSIONS": "4"})
    assert argv[argv.index("--concurrency") + 1] == "50"
    assert variables == {"DB_POOL_SIZE": "4"}


def test_an_option_is_replaced_or_added():
    assert with_option(["celery", "-Q", "dispatch"], "-Q", "dispatch,default") == ["celery", "-Q", "dispatch,default"]
    assert with_option(["celery"], "-n", "w1@%h") == ["celery", "-n", "w1@%h"]
