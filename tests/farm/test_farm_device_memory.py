"""The device-memory probe (``tasks.inference.device_memory``) the GPU check reads.

On a CPU it degrades to ``allocated_bytes``/``reserved_bytes`` = ``None`` and the
process's RSS; on CUDA it reports ``torch.cuda.memory_allocated``/``memory_reserved``
(exercised by ``benchmarks/gpu_check.sh`` on a GPU machine).
"""
from omnimind.config import Settings
from omnimind.models.runtime import ModelRuntime


def test_runtime_device_memory_on_cpu():
    report = ModelRuntime(Settings(device="cpu")).device_memory()
    assert report["device"] == "cpu" and report["cuda"] is False
    assert report["allocated_bytes"] is None and report["reserved_bytes"] is None
    assert report["rss_bytes"] > 0 and report["model_version"] == 0


def test_device_memory_task_answers_from_the_serving_worker(start_worker, celery_app):
    worker = start_worker("devmem", OMNIMIND_DEVICE="cpu")
    report = celery_app.send_task("tasks.inference.device_memory").get(timeout=30)
    assert report["node_id"] == worker.hostname
    assert report["cuda"] is False and report["allocated_bytes"] is None
    assert report["rss_bytes"] > 0 and report["model_version"] == 0
