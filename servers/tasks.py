from celery import shared_task

from . import services


@shared_task(soft_time_limit=60)
def run_connection_test(test_id: int) -> None:
    services.connection_test_run(test_id=test_id)
