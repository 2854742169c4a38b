"""probes.cost: the predictor work counted by kind, and the one private-torch reader's fallback."""
from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwad

from probes import cost


def _kinds(fn) -> list[tuple[str, int]]:
    seen = []

    def probe(x):
        seen.append(cost.call_kind(x))
        return x * 2

    fn(probe)
    return seen


def test_forward_graph_dual_and_vmapped_calls_are_counted():
    x = torch.rand(3, 4)
    with torch.no_grad():
        assert _kinds(lambda f: f(x)) == [("forwards", 3)]
    assert _kinds(lambda f: f(x.clone().requires_grad_(True))) == [("vjps", 3)]
    with fwad.dual_level():
        assert _kinds(lambda f: f(fwad.make_dual(x, torch.ones_like(x)))) == [("jvps", 3)]
    tangents = torch.rand(5, 3, 4)
    seen = _kinds(lambda f: torch.func.vmap(lambda t: torch.func.jvp(f, (x,), (t,))[1])(tangents))
    assert seen == [("jvps", 15)]


def test_vmapped_count_falls_back_to_one_without_the_private_api(monkeypatch):
    import torch._C

    tangents = torch.rand(5, 3, 4)
    counts = []
    torch.func.vmap(lambda t: counts.append(cost.vmapped_count(t)) or t)(tangents)
    assert counts == [5]
    monkeypatch.delattr(torch._C._functorch, "is_functorch_wrapped_tensor")
    counts.clear()
    torch.func.vmap(lambda t: counts.append(cost.vmapped_count(t)) or t)(tangents)
    assert counts == [1]
    assert cost.vmapped_count(torch.rand(2)) == 1
