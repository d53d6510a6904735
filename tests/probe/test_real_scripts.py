"""The probe on the layouts and bug families of real training scripts: optimizers built anywhere, every form of
`autograd.grad`, and findings that blame the cause, not the line that crashed."""

import pytest

from .conftest import cut_line, data

HEAD = "import torch\nimport torch.nn as nn\n\n\n"
BUILD = ("    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))\n"
         "    opt = torch.optim.Adam(model.parameters(), lr=1e-3)\n")
LOOP = ("    for _ in range(3):\n        x, y = torch.randn(16, 4), torch.randn(16, 1)\n"
        "        loss = nn.functional.mse_loss(model(x), y)\n"
        "        opt.zero_grad()\n        loss.backward()\n        opt.step()\n")
# the same training, laid out as scripts are: where the optimizer lives differs
LAYOUTS = {
    "module level": "if True:\n" + BUILD + LOOP,
    "main()": "def main():\n" + BUILD + LOOP + "\n\nmain()\n",
    "__main__ guard": "def main():\n" + BUILD + LOOP + "\n\nif __name__ == '__main__':\n    main()\n",
    "train(model, opt) helper": "def train(model, opt):\n" + LOOP + "\n\ndef build():\n" + BUILD
                                + "    return model, opt\n\n\nif __name__ == '__main__':\n    train(*build())\n",
}


def probe(launcher, name, **kw):
    return launcher.run(data(name), timeout=kw.pop("timeout", 90.0), **kw)


def codes_at(res, code):
    return [f for f in res["findings"] if f["code"] == code]


def assert_every_parameter_trains(res):
    assert res["status"] == "ok", res["error"]
    assert len(res["parameters"]) == 4
    for p in res["parameters"]:
        assert p["grad"] == "ok" and p["in_optimizer"] is True, p
    assert res["findings"] == []
    assert len(res["optimizers"]) == 1 and res["optimizers"][0]["n_params"] == 4


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_optimizer_built_anywhere_holds_its_parameters(launcher, scripts, layout):
    path = scripts / "layout.py"
    path.write_text(HEAD + LAYOUTS[layout])
    assert_every_parameter_trains(launcher.run(str(path), timeout=90))


def test_optimizer_built_in_a_trainer_init_holds_its_parameters(launcher):
    assert_every_parameter_trains(probe(launcher, "opt_trainer_class.py"))


def test_a_trainer_attribute_is_named_by_the_variable_holding_the_trainer(launcher):
    res = probe(launcher, "opt_trainer_class.py")
    assert [p["name"] for p in res["parameters"]][:2] == ["trainer.model.0.weight", "trainer.model.0.bias"]


GRAD_FORMS = {
    "generator": "net.parameters()",
    "list": "list(net.parameters())",
    "tuple": "tuple(net.parameters())",
    "dict values": "dict(net.named_parameters()).values()",
    "map": "map(lambda p: p, net.parameters())",
    "single tensor": "net.weight",
}


@pytest.mark.parametrize("form", sorted(GRAD_FORMS))
def test_autograd_grad_takes_every_form_torch_takes(launcher, tmp_path, form):
    path = tmp_path / "grad_form.py"
    path.write_text("import torch\nimport torch.nn as nn\n\nnet = nn.Linear(3, 1)\n"
                    "x, y = torch.randn(8, 3), torch.randn(8, 1)\n"
                    "loss = nn.functional.mse_loss(net(x), y)\n"
                    f"grads = torch.autograd.grad(loss, {GRAD_FORMS[form]})\n"
                    "assert all(g is not None for g in grads), grads\n"
                    "print('GRADS', len(grads))\n")
    res = launcher.run(str(path), timeout=60)
    assert res["status"] == "ok", res["error"]
    expected = 1 if form == "single tensor" else 2
    assert f"GRADS {expected}" in res["output"]["head"]  # the script went on with the gradients it asked for
    assert {p["name"]: p["grad"] for p in res["parameters"]}["net.weight"] == "ok"


def test_maml_first_order_inner_gradients_run(launcher):
    res = probe(launcher, "maml_first_order.py")
    assert res["status"] == "ok", res["error"]
    assert {p["name"]: p["grad"] for p in res["parameters"]} == {"net.weight": "ok", "net.bias": "ok"}
    assert res["steps"] >= 2 and res["findings"] == []  # the outer backward() was observed as well


def test_optimizer_step_between_loss_and_backward_blames_the_step(launcher):
    name = "step_between_loss_and_backward.py"
    res = probe(launcher, name)
    err = res["error"]
    assert err["type"] == "RuntimeError" and err["line"] == cut_line(data(name))
    assert err["raised_at"]["line"] == cut_line(data(name)) + 2
    assert "D.2.weight" in err["cause"] and "step()" in err["cause"]
    (finding,) = codes_at(res, "GT906")
    assert finding["line"] == cut_line(data(name)) and "D.2.weight" in finding["message"]


@pytest.mark.parametrize("name, kind", [("item_sum_backward.py", "AttributeError"),
                                        ("item_tensor_rebuilt.py", "RuntimeError"),
                                        ("no_grad_in_list_error.py", "RuntimeError"),
                                        ("no_grad_dict_error.py", "RuntimeError")])
def test_a_failing_backward_is_blamed_on_the_cut(launcher, name, kind):
    res = probe(launcher, name)
    err = res["error"]
    assert err["type"] == kind and err["line"] == cut_line(data(name)), err
    assert err["raised_at"]["line"] > err["line"]
    assert codes_at(res, "GT906")[0]["line"] == cut_line(data(name))
    assert codes_at(res, "GT907") == []  # the whole loss is dead: the error says so, not a term


def test_python_number_accumulator_names_the_dead_parameters(launcher):
    res = probe(launcher, "item_accumulator.py")
    params = {p["name"]: p for p in res["parameters"]}
    for name in ("model.weight", "model.bias"):
        assert params[name]["grad"] == "none" and params[name]["cut"]["line"] == cut_line(data("item_accumulator.py"))


def test_no_grad_values_carried_in_a_list(launcher):
    res = probe(launcher, "no_grad_list.py")
    params = {p["name"]: p for p in res["parameters"]}
    assert params["encoder.weight"]["grad"] == "none" and params["head.weight"]["grad"] == "ok"
    assert params["encoder.weight"]["cut"]["line"] == cut_line(data("no_grad_list.py"))


@pytest.mark.parametrize("name, names", [("module_in_forward.py", ["head.weight", "head.bias"]),
                                         ("module_in_forward_attr.py", ["clf.proj.weight", "clf.proj.bias"])])
def test_layers_built_inside_forward_are_blamed_at_their_construction(launcher, name, names):
    res = probe(launcher, name)
    assert res["status"] == "ok", res["error"]
    params = {p["name"]: p for p in res["parameters"]}
    line = cut_line(data(name))
    for n in names:
        assert params[n]["in_optimizer"] is False and params[n]["made_in_forward"]["line"] == line
    (finding,) = codes_at(res, "GT904")
    assert finding["line"] == line and "forward()" in finding["message"]
    assert all(n in finding["message"] for n in names)


def test_layers_in_nested_python_lists_are_unregistered(launcher):
    res = probe(launcher, "nested_layer_lists.py")
    params = {p["name"]: p for p in res["parameters"]}
    nested = [n for n in params if n.startswith("model.stages.")]
    assert len(nested) == 8 and "model.stages.1.1.weight" in nested
    assert all(params[n]["registered"] is False and params[n]["in_optimizer"] is False for n in nested)
    (finding,) = codes_at(res, "GT904")
    assert finding["line"] == cut_line(data("nested_layer_lists.py")) and "not registered" in finding["message"]


@pytest.mark.parametrize("name, term_line", [("dead_term_detach.py", 11), ("dead_term_item.py", 10),
                                             ("dead_term_no_grad.py", 12)])
def test_a_dead_loss_term_is_found_while_other_terms_train_the_same_parameters(launcher, name, term_line):
    res = probe(launcher, name)
    assert res["status"] == "ok", res["error"]
    assert all(p["grad"] == "ok" for p in res["parameters"])  # the gradients alone do not show it
    (finding,) = codes_at(res, "GT907")
    assert finding["line"] == term_line
    assert finding["data"]["cut"]["line"] == cut_line(data(name))


def test_live_terms_and_constant_offsets_are_not_dead(launcher):
    res = probe(launcher, "two_live_terms.py")
    assert res["status"] == "ok" and codes_at(res, "GT907") == []


def test_parameters_left_out_of_a_project_optimizer_class_are_blamed_on_its_construction(launcher):
    res = probe(launcher, "custom_optimizer_head_left_out.py")
    assert res["status"] == "ok", res["error"]
    params = {p["name"]: p for p in res["parameters"]}
    assert params["head.weight"]["in_optimizer"] is False and params["encoder.weight"]["in_optimizer"] is True
    (finding,) = codes_at(res, "GT904")
    line = cut_line(data("custom_optimizer_head_left_out.py"))
    assert finding["line"] == line and "ScaledSGD" in finding["message"] and "`head.weight`" in finding["message"]


def test_a_loss_built_from_item_and_numpy_scalars_is_blamed_on_the_item(launcher):
    res = probe(launcher, "item_numpy_reward.py")
    error = res["error"]
    assert error["type"] == "AttributeError" and "numpy.float64" in error["message"]
    assert error["line"] == cut_line(data("item_numpy_reward.py")) and ".item()" in error["cause"]


def test_a_parameter_rebound_under_no_grad_is_blamed_where_it_was_rebound(launcher):
    res = probe(launcher, "rebound_under_no_grad.py")
    error = res["error"]
    assert error["type"] == "AttributeError" and error["line"] == cut_line(data("rebound_under_no_grad.py"))
    assert "`b.grad` is None" in error["cause"]


def test_an_optimizer_with_no_parameters_is_blamed_on_the_layers_built_in_forward(launcher):
    res = probe(launcher, "layers_only_in_forward.py")
    error = res["error"]
    assert error["type"] == "ValueError" and "empty parameter list" in error["message"]
    assert error["line"] == cut_line(data("layers_only_in_forward.py")) and "forward()" in error["cause"]


def test_an_optimizer_with_no_parameters_is_blamed_on_the_plain_list_that_holds_the_layers(launcher):
    res = probe(launcher, "layers_in_plain_list.py")
    error = res["error"]
    assert error["type"] == "ValueError" and "empty parameter list" in error["message"]
    assert error["line"] == cut_line(data("layers_in_plain_list.py")) and "`Net.layers`" in error["cause"]


def test_an_inplace_change_of_a_saved_output_is_blamed_on_the_op_that_made_the_saved_kind_of_tensor(launcher):
    res = probe(launcher, "inplace_view_on_relu_output.py")
    error = res["error"]
    assert error["type"] == "RuntimeError" and "modified by an inplace operation" in error["message"]
    assert error["line"] == cut_line(data("inplace_view_on_relu_output.py")) and "unsqueeze_" in error["cause"]


def test_a_cut_in_forward_is_blamed_rather_than_an_initialisation_through_data(launcher):
    res = probe(launcher, "data_cut_after_data_init.py")
    assert res["status"] == "ok", res["error"]
    params = {p["name"]: p for p in res["parameters"]}
    emb = params["model.emb.weight"]
    assert emb["grad"] == "none" and emb["cut"]["line"] == cut_line(data("data_cut_after_data_init.py"))
