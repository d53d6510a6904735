"""The TensorFlow probe: tape.gradient intercepted, dead variables named, the cut located."""

import pytest

from .conftest import cut_line, data

pytest.importorskip("tensorflow")

CASES = {
    "tf_numpy_in_tape.py": ({"w": "none"}, ["v"], ".numpy()"),
    "tf_stop_gradient.py": ({"scale": "none"}, ["offset"], "stop_gradient"),
    "tf_int_variable.py": ({"bias": "none"}, ["weight"], "int32 variable"),
    "tf_round.py": ({"level": "none"}, [], "round"),
    "tf_unwatched.py": ({"grid": "none"}, [], "unwatched tensor"),
    "tf_unused_variable.py": ({"layer.extra": "none"}, ["layer.w"], None),
    "tf_keras_fit.py": ({"model.layers.1.alpha": "none"}, ["model.layers.0.kernel", "model.layers.2.kernel"],
                        "stop_gradient"),
}


@pytest.fixture(scope="module")
def tf_launcher(module_launcher):
    return module_launcher


@pytest.mark.parametrize("name", sorted(CASES))
def test_tf_dead_variables_and_cut(tf_launcher, name):
    dead, alive, op = CASES[name]
    res = tf_launcher.run(data(name), timeout=120)
    assert res["status"] == "ok", res["error"]
    assert res["framework"] == "tensorflow" and res["mode"] == "script"
    params = {p["name"]: p for p in res["parameters"]}
    line = cut_line(data(name))
    for pname, grad in dead.items():
        p = params[pname]
        assert p["grad"] == grad
        if op is None:  # never read inside the tape: the finding sits on its definition
            assert p["cut"] is None and p["defined_at"]["line"] == line and p["why"] == "unused"
        else:
            assert p["cut"]["line"] == line and p["cut"]["op"] == op
        assert any(f["code"] == "GT901" and pname in f["message"] for f in res["findings"])
    for pname in alive:
        assert params[pname]["grad"] == "ok"


def test_tf_healthy_keras_model_is_quiet(tf_launcher):
    res = tf_launcher.run(data("tf_good.py"), timeout=120)
    assert res["status"] == "ok" and res["findings"] == []
    assert sorted(p["name"] for p in res["parameters"]) == [
        "model.layers.0.bias", "model.layers.0.kernel", "model.layers.1.bias", "model.layers.1.kernel"]
    assert all(p["grad"] == "ok" for p in res["parameters"])
    assert "bubblewrap" in res["isolation"] or res.get("isolation_notice")


def test_tf_keras_fit_runs_eagerly_and_says_so(tf_launcher):
    res = tf_launcher.run(data("tf_keras_fit.py"), timeout=120)
    assert "fit()" in res["mode_reason"]


def test_tf_file_without_gradient_call_is_unsupported(tf_launcher, tmp_path):
    path = tmp_path / "plain_tf.py"
    path.write_text("import tensorflow as tf\nprint(tf.constant(1.0) + 1)\n")
    res = tf_launcher.run(str(path), timeout=60)
    assert res["status"] == "unsupported" and "tape.gradient()" in res["error"]["message"]
