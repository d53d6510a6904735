"""The JAX probe: jax.grad / value_and_grad intercepted, dead pytree leaves named by path, the cut located."""

import pytest

from .conftest import cut_line, data

pytest.importorskip("jax")

# file -> (leaf -> grad it must get, leaves that must train, the operation blamed)
CASES = {
    "jax_stop_gradient.py": ({"params['dense']['w']": "zero", "params['dense']['b']": "zero"},
                             ["params['head']['w']", "params['head']['b']"], "stop_gradient"),
    "jax_closure.py": ({"params['w']": "zero"}, ["params['b']"], "closure"),
    "jax_round.py": ({"params['scale']": "zero"}, ["params['shift']"], "round"),
}


@pytest.fixture(scope="module")
def jax_launcher(module_launcher):
    return module_launcher


@pytest.mark.parametrize("name", sorted(CASES))
def test_dead_leaves_named_by_path_with_the_cut_line(jax_launcher, name):
    dead, alive, op = CASES[name]
    res = jax_launcher.run(data(name), timeout=120)
    assert res["status"] == "ok", res["error"]
    assert res["framework"] == "jax"
    params = {p["name"]: p for p in res["parameters"]}
    line = cut_line(data(name))
    for leaf, grad in dead.items():
        assert params[leaf]["grad"] == grad
        assert (params[leaf]["cut"]["line"], params[leaf]["cut"]["op"]) == (line, op), params[leaf]["cut"]
        assert any(f["code"] == "GT902" and leaf in f["message"] for f in res["findings"])
    for leaf in alive:
        assert params[leaf]["grad"] == "ok" and params[leaf]["cut"] is None
    assert any(f["code"] == "GT905" and f["line"] == line for f in res["findings"])


def test_integer_leaf_is_named_where_it_was_made(jax_launcher):
    res = jax_launcher.run(data("jax_int_params.py"), timeout=120)
    err = res["error"]
    assert err["type"] == "TypeError" and err["line"] == cut_line(data("jax_int_params.py"))
    assert err["raised_at"]["line"] == 16
    (leaf,) = res["parameters"]
    assert (leaf["name"], leaf["grad"], leaf["cut"]["op"]) == ("params['W']", "none", "int32 array")


def test_gradient_of_the_wrong_argument_blames_argnums(jax_launcher):
    res = jax_launcher.run(data("jax_argnums.py"), timeout=120)
    err = res["error"]
    assert err["line"] == cut_line(data("jax_argnums.py")) and "argnums=1" in err["cause"]


def test_float_of_a_tracer_is_located_in_the_function(jax_launcher, scripts):
    path = scripts / "tracer.py"
    path.write_text("import jax\nimport jax.numpy as jnp\n\nparams = {'log_t': jnp.array(0.5)}\n\n\n"
                    "def loss(p, x):\n    t = float(jnp.exp(p['log_t']))\n    return jnp.sum(x / t)\n\n\n"
                    "g = jax.grad(loss)(params, jnp.ones(3))\n")
    res = jax_launcher.run(str(path), timeout=120)
    err = res["error"]
    assert "Concretization" in err["type"] and err["line"] == 8 and "Python number" in err["cause"]


def test_clean_jitted_training_has_no_findings(jax_launcher):
    res = jax_launcher.run(data("jax_clean.py"), timeout=120)
    assert res["status"] == "ok", res["error"]
    assert {p["name"]: p["grad"] for p in res["parameters"]} == {"params['w']": "ok", "params['b']": "ok"}
    assert res["findings"] == [] and res["steps"] == 3


def test_leaves_whose_optax_updates_are_all_zero_never_train(jax_launcher):
    pytest.importorskip("optax")
    res = jax_launcher.run(data("jax_optax_masked.py"), timeout=120)
    assert res["status"] == "ok", res["error"]
    params = {p["name"]: p for p in res["parameters"]}
    assert params["params['encoder']['w']"]["grad"] == "ok" and params["params['encoder']['w']"]["in_optimizer"] is False
    assert params["params['head']['w']"]["in_optimizer"] is True
    (finding,) = [f for f in res["findings"] if f["code"] == "GT904"]
    assert finding["line"] == cut_line(data("jax_optax_masked.py")) and "encoder" in finding["message"]
