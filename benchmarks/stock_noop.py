"""The baseline of benchmarks/plain_client.py: a stock Celery app with one no-op task, as a
user would write it, and nothing of OmniMind's. Its worker runs with the Procfile inference
line's pool and concurrency:

    STOCK_BROKER_URL=redis://... STOCK_RESULT_BACKEND=redis://... \
        celery -A stock_noop worker -Q stock --pool=threads --concurrency=16

(``STOCK_QUEUE_TYPE=quorum`` on a RabbitMQ vhost whose queues are quorum, as the farm's are.)
"""
import os

from celery import Celery

app = Celery("stock", broker=os.environ["STOCK_BROKER_URL"], backend=os.environ["STOCK_RESULT_BACKEND"])
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                task_create_missing_queue_type=os.environ.get("STOCK_QUEUE_TYPE", "classic"))


@app.task(name="stock.noop")
def noop():
    return None
