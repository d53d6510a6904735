"""Every PyTorch cut family probed for real: the dead parameters are named and the cut line is right."""

import json
import subprocess
import sys

import pytest

from .conftest import cut_line, data

# file -> (parameters that must be dead with their expected grad, status)
DEAD = {
    "detach_head.py": {"model.encoder.weight": "none", "model.encoder.bias": "none"},
    "data_attr.py": {"w": "none"},
    "item_float.py": {"scale": "none"},
    "numpy_round_trip.py": {"enc.weight": "none", "enc.bias": "none"},
    "no_grad_region.py": {"net.backbone.weight": "none", "net.backbone.bias": "none"},
    "argmax_cast.py": {"scorer.weight": "none", "scorer.bias": "none"},
    "long_cast.py": {"predictor.weight": "none", "predictor.bias": "none"},
    "sign_round.py": {"w": "zero"},
    "unused_layer.py": {"clf.aux.weight": "none", "clf.aux.bias": "none"},
    "nonleaf_param.py": {"weights": "none"},
    "compiled_detach.py": {"enc.weight": "none", "enc.bias": "none"},
    "no_grad_decorator.py": {"net.enc.weight": "none", "net.enc.bias": "none"},
    "nonleaf_attribute.py": {"scaler.gain": "none"},
    "gradient_penalty_item.py": {"critic.log_lam": "none"},
    "module_flag_unfreeze.py": {"model.0.weight": "none", "model.0.bias": "none"},
    "parameter_in_forward.py": {"layer.weight": "none"},
    "typo_partial.py": {"drag": "none"},
    "topk_indices.py": {"scorer.weight": "none", "scorer.bias": "none"},
    "noisy_normal.py": {"layer.w_mu": "zero", "layer.w_sigma": "zero"},
}
ALIVE = {
    "detach_head.py": ["model.head.weight", "model.head.bias"],
    "data_attr.py": ["b"],
    "item_float.py": ["net.weight", "net.bias"],
    "numpy_round_trip.py": ["dec.weight", "dec.bias"],
    "no_grad_region.py": ["net.head.weight"],
    "argmax_cast.py": ["table.weight"],
    "long_cast.py": ["bins.weight"],
    "sign_round.py": ["bias"],
    "unused_layer.py": ["clf.body.weight", "clf.out.weight"],
    "gradient_penalty_item.py": ["critic.net.0.weight", "critic.net.2.weight"],
    "module_flag_unfreeze.py": ["model.2.weight", "model.2.bias"],
    "parameter_in_forward.py": ["layer.bias"],
    "typo_partial.py": ["speed"],
    "topk_indices.py": ["table.weight"],
    "noisy_normal.py": ["layer.bias"],
}
CODES = {"none": "GT901", "zero": "GT902"}


def probe(launcher, name, **kw):
    return launcher.run(data(name), timeout=kw.pop("timeout", 60.0), **kw)


@pytest.mark.parametrize("name", sorted(DEAD))
def test_dead_parameters_named_with_the_cut_line(launcher, name):
    res = probe(launcher, name)
    assert res["status"] == "ok", res["error"]
    assert res["framework"] == "torch" and res["mode"] == "script"
    params = {p["name"]: p for p in res["parameters"]}
    line = cut_line(data(name))
    for pname, grad in DEAD[name].items():
        assert pname in params, sorted(params)
        p = params[pname]
        assert p["grad"] == grad
        if name == "unused_layer.py":  # nothing cut it: it is never used; the finding sits on its definition
            assert p["cut"] is None and p["defined_at"]["line"] == line
        else:
            assert p["cut"]["line"] == line, p["cut"]
            assert p["cut"]["path"] == data(name)
        code = CODES[grad]
        assert any(f["code"] == code and pname in f["message"] for f in res["findings"]), res["findings"]
    for pname in ALIVE.get(name, []):
        assert params[pname]["grad"] == "ok"
        assert params[pname]["cut"] is None
    if name != "unused_layer.py":
        assert any(f["code"] in ("GT905", "GT901", "GT902") and f["line"] == line for f in res["findings"])


def test_cut_message_says_what_cut(launcher):
    res = probe(launcher, "detach_head.py")
    cut = next(f for f in res["findings"] if f["code"] == "GT905")
    assert "detach" in cut["message"] and "model.encoder.weight" in cut["message"]
    dead = next(f for f in res["findings"] if f["code"] == "GT901")
    assert dead["line"] == 8  # self.encoder = nn.Linear(6, 12)
    assert dead["related"][0]["line"] == cut_line(data("detach_head.py"))
    assert dead["severity"] == "warning"


def test_no_grad_cut_points_at_the_with_statement(launcher):
    res = probe(launcher, "no_grad_region.py")
    p = next(p for p in res["parameters"] if p["name"] == "net.backbone.weight")
    assert p["cut"]["line"] == cut_line(data("no_grad_region.py"))
    assert p["cut"]["op_line"] == 13  # the op that ran under no_grad
    assert "disabled" in p["cut"]["reason"]


@pytest.mark.parametrize("name,fragment", [
    ("inplace_leaf.py", "leaf Variable"),
    ("inplace_saved.py", "modified by an inplace operation"),
    ("inplace_layer_on_saved_input.py", "modified by an inplace operation"),
    ("typo.py", "does not require grad"),
    ("grad_off_later.py", "does not require grad"),
    ("custom_function_order.py", "ScaleClampBackward returned a gradient different than None"),
])
def test_errors_point_at_the_offending_line(launcher, name, fragment):
    res = probe(launcher, name)
    assert res["status"] == "error"
    err = res["error"]
    assert err["type"] == "RuntimeError" and fragment in err["message"]
    assert err["line"] == cut_line(data(name)), err
    assert err["path"] == data(name)
    f = next(f for f in res["findings"] if f["code"] == "GT906")
    assert f["line"] == err["line"] and f["severity"] == "error"


def test_inplace_saved_names_the_backward_line_too(launcher):
    err = probe(launcher, "inplace_saved.py")["error"]
    assert err["raised_at"]["line"] == 9 and "add_" in err["cause"]


def test_inplace_layer_is_named_where_it_is_built(launcher):
    err = probe(launcher, "inplace_layer_on_saved_input.py")["error"]
    assert "nn.ReLU(inplace=True)" in err["cause"] and "run at line 13" in err["cause"], err


def test_error_on_a_later_step_is_caught(launcher):
    res = probe(launcher, "grad_off_later.py")
    assert res["steps"] >= 2 and "set_grad_enabled" not in res["error"]["message"]
    assert "disabled" in res["error"]["cause"]


def test_typo_is_explained(launcher):
    err = probe(launcher, "typo.py")["error"]
    assert "requires_gradient" in err["cause"] and "typo" in err["cause"]


def test_unregistered_parameters_have_grads_but_no_optimizer(launcher):
    res = probe(launcher, "unregistered_list.py")
    params = {p["name"]: p for p in res["parameters"]}
    p = params["stack.layers.0.weight"]
    assert p["registered"] is False and p["in_optimizer"] is False and p["grad"] == "ok"
    assert params["stack.inp.weight"]["in_optimizer"] is True
    f = next(f for f in res["findings"] if f["code"] == "GT904")
    assert f["line"] == cut_line(data("unregistered_list.py")) and "not registered" in f["message"]


def test_healthy_script_has_no_findings(launcher):
    res = probe(launcher, "good_mlp.py")
    assert res["status"] == "ok" and res["error"] is None
    assert res["findings"] == []
    assert [p["grad"] for p in res["parameters"]] == ["ok"] * 4
    assert all(p["in_optimizer"] for p in res["parameters"])
    assert res["output"]["head"].startswith("0 ")  # the script's own prints are captured, not mixed in


def test_gradient_map_ops_carry_lines_and_parameters(launcher):
    res = probe(launcher, "detach_head.py")
    ops = res["ops"]
    assert ops and all("line" in o and "params" in o for o in ops)
    assert any(o["cut"] and o["line"] == cut_line(data("detach_head.py")) for o in ops)


def test_module_mode_builds_and_differentiates(launcher):
    res = probe(launcher, "module_only.py")
    assert res["mode"] == "module" and "no backward()" in res["mode_reason"]
    params = {p["name"]: p for p in res["parameters"]}
    assert params["Tagger.embed.weight"]["grad"] == "none"
    assert params["Tagger.embed.weight"]["cut"]["line"] == cut_line(data("module_only.py"))
    assert params["Tagger.proj.weight"]["grad"] == "ok"


def test_module_mode_says_why_a_module_cannot_be_built(launcher):
    res = probe(launcher, "module_unbuildable.py")
    assert res["status"] == "error"
    assert "NeedsConfig(config)" in res["error"]["message"] and "config" in res["error"]["message"]


def test_cut_inside_an_imported_project_file(launcher):
    res = probe(launcher, "helper_pkg_main.py")
    p = next(p for p in res["parameters"] if p["name"] == "enc.a.weight")
    assert p["grad"] == "none"
    assert p["cut"]["path"] == data("helper_pkg_mod.py") and p["cut"]["line"] == cut_line(data("helper_pkg_mod.py"))


def test_unsupported_and_missing_files(launcher, tmp_path):
    jax_file = tmp_path / "j.py"
    jax_file.write_text("import jax\n")
    res = launcher.run(str(jax_file))
    assert res["status"] == "unsupported" and "JAX" in res["error"]["message"]
    res = launcher.run(str(tmp_path / "missing.py"))
    assert res["status"] == "error" and "cannot read" in res["error"]["message"]


def test_missing_framework_in_interpreter_is_explained(tmp_path):
    from gradtrace.probe.launcher import ProbeLauncher

    lau = ProbeLauncher()
    try:
        res = lau.run(data("good_mlp.py"), python="/usr/bin/python3")
    finally:
        lau.shutdown()
    if res["status"] == "ok":  # the system python happens to have torch
        return
    assert res["status"] == "error" and "cannot import torch" in res["error"]["message"]


def test_cli_json_contract():
    p = subprocess.run([sys.executable, "-m", "gradtrace", "probe", "--format", "json", data("detach_head.py")],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 1, p.stderr
    res = json.loads(p.stdout)
    assert set(res) >= {"status", "framework", "isolation", "parameters", "findings", "error"}
    for prm in res["parameters"]:
        assert set(prm) >= {"name", "shape", "grad", "defined_at", "cut"}
        assert prm["grad"] in ("ok", "none", "zero", "nonfinite")
    for f in res["findings"]:
        assert set(f) >= {"path", "line", "column", "end_line", "end_column", "code", "severity", "message", "fix"}
        assert f["code"].startswith("GT9")


def test_cli_text_output():
    p = subprocess.run([sys.executable, "-m", "gradtrace", "probe", data("good_mlp.py")],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "mlp.0.weight" in p.stdout and "isolation:" in p.stdout


@pytest.mark.parametrize("name,fragment,cause", [
    ("inference_reuse.py", "Inference tensors", "inference_mode"),
    ("optimizer_step_between.py", "modified by an inplace operation", "optimizer.step()"),
    ("rewrap_losses.py", "does not require grad", ".item()"),
])
def test_more_errors_point_at_their_cause(launcher, name, fragment, cause):
    res = probe(launcher, name)
    err = res["error"]
    assert fragment in err["message"] and cause in err["cause"]
    assert err["line"] == cut_line(data(name)) and err["raised_at"]["line"] != err["line"]


def test_autograd_grad_with_allow_unused_names_the_unused_input(launcher):
    res = probe(launcher, "allow_unused.py")
    params = {p["name"]: p for p in res["parameters"]}
    assert params["a"]["grad"] == "ok" and params["b"]["grad"] == "none" and params["b"]["why"] == "unused"
    assert res["steps"] == 1 and "finished" in res["stop_reason"]  # the script went on after the gradient


def test_nonfinite_gradient_points_at_the_op(launcher):
    res = probe(launcher, "nan_where.py")
    p = res["parameters"][0]
    assert p["name"] == "w" and p["grad"] == "nonfinite"
    assert p["cut"]["op"] == "sqrt" and p["cut"]["line"] == cut_line(data("nan_where.py"))
    assert any(f["code"] == "GT903" for f in res["findings"])


def test_bad_interpreter_is_reported_not_raised(tmp_path):
    from gradtrace.probe.launcher import ProbeLauncher

    lau = ProbeLauncher()
    try:
        res = lau.run(data("good_mlp.py"), python=str(tmp_path / "no-such-python"))
    finally:
        lau.shutdown()
    assert res["status"] == "error" and "no-such-python" in res["error"]["message"]


def test_concurrent_probes_share_one_worker():
    import threading

    from gradtrace.probe.launcher import ProbeLauncher

    lau = ProbeLauncher()
    results = {}

    def go(name):
        results[name] = lau.run(data(name))

    try:
        threads = [threading.Thread(target=go, args=(n,)) for n in ("good_mlp.py", "detach_head.py")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert lau.workers() == 1
    finally:
        lau.shutdown()
    assert results["good_mlp.py"]["status"] == "ok" and results["good_mlp.py"]["findings"] == []
    assert any(f["code"] == "GT905" for f in results["detach_head.py"]["findings"])


def test_module_mode_tries_the_next_layer_when_the_first_input_does_not_fit(launcher):
    res = probe(launcher, "module_head_first.py")
    assert res["status"] == "ok" and res["mode"] == "module"
    params = {p["name"]: p for p in res["parameters"]}
    assert params["HeadFirst.body.weight"]["grad"] == "ok"
    assert params["HeadFirst.spare.weight"]["grad"] == "none"
    assert params["HeadFirst.spare.weight"]["defined_at"]["line"] == cut_line(data("module_head_first.py"))
    assert any("randn(2, 5)" in n for n in res["notes"])


def test_syntax_error_is_reported_with_its_line(launcher, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\n\nx = torch.ones(2,\n")
    res = launcher.run(str(path))
    assert res["status"] == "error" and res["error"]["type"] == "SyntaxError" and res["error"]["line"] == 3


def test_optimizer_refusing_a_non_leaf_points_at_the_conversion(launcher):
    res = probe(launcher, "nonleaf_optimized.py")
    assert res["status"] == "error"
    err = res["error"]
    assert err["type"] == "ValueError" and "non-leaf" in err["message"]
    assert err["line"] == cut_line(data("nonleaf_optimized.py")), err
    assert "double" in err["cause"] and err["raised_at"]["line"] == err["line"] + 1


def test_inference_mode_decorator_is_the_line_blamed(launcher):
    res = probe(launcher, "inference_decorator.py")
    assert res["status"] == "error"
    err = res["error"]
    assert "Inference tensors" in err["message"]
    assert err["line"] == cut_line(data("inference_decorator.py")), err
