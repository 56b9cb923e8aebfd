"""omnimind.app.task(): a task declared from another thread while the app is being built is
registered with it (the declaration and the app's check happen under the app's lock)."""
import threading

import omnimind.app as app_module


def late():
    return "late"


def test_a_task_declared_while_the_app_is_built_is_registered(monkeypatch):
    monkeypatch.setattr(app_module, "_app", None)
    monkeypatch.setattr(app_module, "_declared_tasks", list(app_module._declared_tasks))
    real_build = app_module.build_app
    declaring = []

    def build(settings):
        app = real_build(settings)  # the declared tasks are registered by now
        thread = threading.Thread(target=lambda: app_module.task(name="tests.unit.late")(late))
        thread.start()
        declaring.append(thread)
        # Without the lock the declaration completes here, sees no app yet, and is lost;
        # with it, it waits for this build. Either way give it a bounded chance to run.
        thread.join(timeout=0.5)
        return app

    monkeypatch.setattr(app_module, "build_app", build)
    app = app_module.get_app()
    declaring[0].join(timeout=30)
    assert not declaring[0].is_alive()
    assert "tests.unit.late" in app.tasks


def test_a_task_module_imported_while_the_app_is_built_does_not_deadlock(monkeypatch):
    # Building the app may import modules that declare tasks: the lock is re-entrant.
    monkeypatch.setattr(app_module, "_app", None)
    monkeypatch.setattr(app_module, "_declared_tasks", list(app_module._declared_tasks))
    real_build = app_module.build_app

    def build(settings):
        app_module.task(name="tests.unit.inner")(late)
        return real_build(settings)

    monkeypatch.setattr(app_module, "build_app", build)
    assert "tests.unit.inner" in app_module.get_app().tasks
