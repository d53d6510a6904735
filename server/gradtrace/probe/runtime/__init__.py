"""The part of the probe that runs inside the user's interpreter (see `gradtrace.probe.runner`).

Standalone on purpose: it imports nothing but the standard library and the framework the probed file uses
(torch, tensorflow or jax), so it works in any interpreter the user selects. It never imports gradtrace (a test
enforces it); the launcher loads it under a private name, without putting any of our directories on `sys.path`.

    worker.py     the warm worker: forks one sandboxed child per probe, talks JSON lines to the launcher
    dispatch.py   one probe: read the file, pick the framework
    script.py     running the file as __main__ up to its training steps; the step budget
    locate.py     the user's frames, lines and variable names
    torch/        recorder (the tape of operations), lineage (cuts and causes), params (naming), optim,
                  patches (the wrapped entry points), modules (module mode), probe (the orchestration)
    tf.py         TensorFlow: GradientTape.gradient intercepted
    jax.py        JAX: jax.grad and jax.value_and_grad intercepted, dead pytree leaves named by path
    sandbox side: confine.py (seccomp, capabilities), jail.py (the unshare mode's file system), cleanup.py,
                  messages.py (the launcher-worker protocol, shared with the launcher)
"""

PROTOCOL = 2
