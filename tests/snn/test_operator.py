import torch

from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.snn.operator import SNNOperator


def make_operator(capacity=8, dtype=torch.float64):
    return SNNOperator(load_checkpoint("builtin:digits_dvs").snn(), capacity, dtype=dtype)


def inputs(t_n, b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t_n, b, 2, 34, 34, generator=g) < 0.1).double() * 3.0


def test_one_slice_at_a_time_equals_one_multistep_run():
    xs = inputs(12, 3)
    a, b = make_operator(), make_operator()
    keys = ["s0", "s1", "s2"]
    for k in keys:
        a.attach(k)
        b.attach(k)
    stepped = [a.step(keys, x) for x in xs]
    chunk = b.run(keys, xs)
    for t, r in enumerate(stepped):
        assert torch.equal(r.output, chunk.output[t])  # the same additions in the same order
        assert torch.equal(r.spikes, chunk.spikes[t])
        assert torch.equal(r.steps, chunk.steps[t])
    assert stepped[-1].steps.tolist() == [12, 12, 12]
    for sa, sb in zip(a.state.layers, b.state.layers, strict=True):
        torch.testing.assert_close(sa.v, sb.v, rtol=0, atol=1e-9)


def test_batched_streams_give_their_solo_results_and_do_not_leak():
    xs = inputs(10, 4, seed=1)
    batched = make_operator()
    keys = ["a", "b", "c", "d"]
    for k in keys:
        batched.attach(k)
    for x in xs:
        res = batched.step(keys, x)
    for i, k in enumerate(keys):
        solo = make_operator()
        solo.attach(k)
        for x in xs:
            r = solo.step([k], x[i : i + 1])
        assert torch.equal(r.spikes, res.spikes[i : i + 1])
        torch.testing.assert_close(r.output, res.output[i : i + 1], rtol=0, atol=1e-9)


def test_streams_step_independently_in_any_subset_and_order():
    xs = inputs(6, 2, seed=2)
    op = make_operator()
    op.attach("x")
    op.attach("y")
    for t in range(6):  # y steps only every other slice, x every slice, in varying order
        op.step(["x"], xs[t, :1])
        if t % 2 == 0:
            r = op.step(["y"], xs[t // 2, 1:])
    ref = make_operator()
    ref.attach("y")
    for t in range(3):
        rr = ref.step(["y"], xs[t, 1:])
    torch.testing.assert_close(r.output, rr.output, rtol=0, atol=1e-9)
    assert r.steps.tolist() == [3]


def test_streams_that_come_and_go_keep_their_solo_results():
    """Detaching moves the last stream into the freed slot; calls for every attached stream step
    views of the first slots, calls for a subset a gathered copy: neither changes a result."""
    xs = inputs(8, 4, seed=5)
    op = make_operator(capacity=4)
    col = {"a": 0, "b": 1, "c": 2, "d": 3}  # each stream's input column
    seen: dict[str, list[torch.Tensor]] = {k: [] for k in col}
    t_of = dict.fromkeys(col, 0)

    def step(keys):
        batch = torch.stack([xs[t_of[k], col[k]] for k in keys])
        res = op.step(keys, batch)
        for i, k in enumerate(keys):
            seen[k].append(res.output[i].clone())
            t_of[k] += 1

    for k in "abc":
        op.attach(k)
    step(["a", "b", "c"])  # every attached stream, in slot order
    step(["c", "a", "b"])  # every attached stream, permuted
    op.detach("a")  # c moves into a's slot
    op.attach("d")
    step(["d", "c", "b"])
    step(["b"])  # a subset: gathered
    op.detach("b")
    step(["c", "d"])
    assert sorted(op.keys) == ["c", "d"]
    for k in col:
        solo = make_operator(capacity=1)
        solo.attach(k)
        for t, got in enumerate(seen[k]):
            expected = solo.step([k], xs[t, col[k]][None]).output[0]
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


def test_reset_clears_state_to_fresh():
    op = make_operator(capacity=2)
    op.attach("a")
    fresh = [layer.v.clone() for layer in op.state.layers]
    xs = inputs(5, 1, seed=3)
    first = [op.step(["a"], x).output.clone() for x in xs]
    op.reset(["a"])
    assert op.counts[0].tolist() == [0, 0, 0, 0] and op.state.out.abs().sum() == 0
    for v, f in zip(op.state.layers, fresh, strict=True):
        assert torch.equal(v.v, f)
    again = [op.step(["a"], x).output for x in xs]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)


def test_detached_slot_is_reused_fresh():
    op = make_operator(capacity=1)
    op.attach("a")
    op.step(["a"], inputs(1, 1)[0])
    op.detach("a")
    op.attach("b")
    assert op.counts[:, 0].tolist() == [0] and op.state.out.abs().sum() == 0
    try:
        op.attach("c")
        raise AssertionError("capacity exceeded without error")
    except RuntimeError as err:
        assert "full" in str(err)


def test_decay_moves_state_towards_fresh_and_keeps_steps():
    op = make_operator(capacity=2)
    op.attach("a")
    op.attach("b")
    fresh = [layer.v.clone() for layer in op.state.layers]
    xs = inputs(3, 2, seed=4)
    for x in xs:
        op.step(["a", "b"], x)
    before_out = op.state.out.clone()
    before_v = [layer.v.clone() for layer in op.state.layers]
    op.decay(["a"], 0.25)
    torch.testing.assert_close(op.state.out[0], 0.25 * before_out[0])
    assert torch.equal(op.state.out[1], before_out[1])  # other streams untouched
    for v, b, f in zip(op.state.layers, before_v, fresh, strict=True):
        torch.testing.assert_close(v.v[0], f[0] + 0.25 * (b[0] - f[0]))
    assert op.counts[:, 0].tolist() == [3, 3]
    op.restart_counts(["a"])
    assert op.counts[:, 0].tolist() == [0, 3]


def test_all_slots_in_any_key_order_equal_solo_streams():
    """Stepping every slot in a permuted key order steps the state in place (input rows
    permuted instead of gathering state) and still gives every stream its own result."""
    xs = inputs(5, 3, seed=5)
    op = make_operator(capacity=3)
    for k in ("a", "b", "c"):
        op.attach(k)
    op.detach("b")
    op.attach("d")  # slots: a 0, d 1, c 2
    keys = ["c", "a", "d"]
    for x in xs:
        res = op.step(keys, x)
    for i, k in enumerate(keys):
        solo = make_operator(capacity=1)
        solo.attach(k)
        for x in xs:
            r = solo.step([k], x[i : i + 1])
        assert torch.equal(r.output, res.output[i : i + 1])
        assert torch.equal(r.counts, res.counts[i : i + 1])


def test_chunked_run_counts_operations_as_single_steps_do():
    xs = inputs(7, 2, seed=6)
    net = load_checkpoint("builtin:digits_dvs").snn()
    stepped, chunked = (SNNOperator(net, 4, dtype=torch.float64, count_operations=True) for _ in range(2))
    for op in (stepped, chunked):
        op.attach("p")
        op.attach("q")
    keys = ["q", "p"]  # a subset of the slots, in reverse order: the gathered path
    singles = [stepped.step(keys, x) for x in xs]
    first = chunked.run(keys, xs[:3])
    rest = chunked.run(keys, xs[3:])
    for t, r in enumerate(singles):
        run, u = (first, t) if t < 3 else (rest, t - 3)
        assert torch.equal(r.output, run.output[u])
        assert torch.equal(r.counts, run.counts[u])
    assert singles[-1].acs.min() > 0 and singles[-1].macs.min() > 0
    assert torch.equal(stepped.counts, chunked.counts)


def test_channels_last_layout_gives_the_same_results():
    xs = inputs(6, 3, seed=7)
    layouts = {
        cl: SNNOperator(load_checkpoint("builtin:digits_dvs").snn(), 4, dtype=torch.float64, channels_last=cl)
        for cl in (False, True)
    }
    conv_weight = next(p for p in layouts[True].net.parameters() if p.dim() == 4)
    assert conv_weight.is_contiguous(memory_format=torch.channels_last)
    assert layouts[True].state.layers[0].v.is_contiguous(memory_format=torch.channels_last)
    results = {}
    for cl, op in layouts.items():
        for k in ("a", "b", "c", "d"):
            op.attach(k)
        every = [op.step(["d", "c", "b", "a"], torch.cat([x, x[:1]])) for x in xs[:3]]  # all slots, permuted
        subset = [op.step(["a", "c"], x[:2]) for x in xs[3:5]]  # gathered
        chunk = op.run(["a", "b", "c", "d"], torch.cat([xs[5:], xs[5:, :1]], 1))
        op.reset(["b"])
        results[cl] = [*every, *subset, chunk, op.step(["b"], xs[0, :1])]
    for a, b in zip(results[False], results[True], strict=True):
        assert torch.equal(a.output, b.output) and torch.equal(a.counts, b.counts)
