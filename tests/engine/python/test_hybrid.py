"""A hybrid model's pools through the Python package: full-attention K/V on layers 0 and 2, a
sliding window of 32 tokens on layer 1 and a recurrent state (conv state at the start of each row)
on layers 3 and 4, each over the engine's CPU tensors. A prompt served twice: the second time the
window's rows inside the window and the state at the end of the cached prefix come back, checked
with torch.equal; the window keeps no page before its window (NO_PAGE)."""

import torch

import strata
from kvmodel import row_values, tokens_of

PAGE, ROWS, WINDOW, SLOTS = 16, 512, 32, 64


def rows_of(tokens, positions, salt, shape):
    v = row_values(tokens, positions, salt, int(torch.tensor(shape).prod()))
    return torch.from_numpy(v).to(torch.float32).view(len(positions), *shape)


def main() -> None:
    kv = torch.zeros(2, 2, ROWS, 4, 8, dtype=torch.bfloat16)
    swa = torch.zeros(2, 1, ROWS, 4, 8, dtype=torch.bfloat16)
    state = torch.zeros(2, SLOTS, 40, dtype=torch.float32)  # layers, request slots, row
    pools = [strata.Pool("kv", layers=[0, 2], buffers=2, tensor=kv),
             strata.Pool("swa", "window", layers=[1], buffers=2, window_tokens=WINDOW, tensor=swa),
             strata.Pool("mamba", "state", layers=[3, 4], conv_state_bytes=32, tensor=state)]
    prompt = tokens_of(9, 6 * PAGE + 4)
    full = 6 * PAGE  # the state the engine leaves: at the end of the last full page
    with strata.Job() as job, strata.Cache(job, model="python-hybrid", pools=pools,
                                           page_size=PAGE, device_tokens=ROWS, state_slots=SLOTS,
                                           host_tokens=4 * ROWS) as cache:
        assert [p.device_rows for p in cache.pools] == [ROWS, ROWS, SLOTS], cache.pools
        for rid in (1, 2):
            cache.step()
            a = cache.admit(rid, prompt)
            cache.launch_loads()
            for layer in range(5):
                cache.wait_layer(rid, layer)
            n, cached = len(prompt), a.cached_tokens
            w, s = a.pool("swa"), a.pool("mamba").state_slot
            assert s != strata.NO_PAGE and a.pool("mamba").pages == [strata.NO_PAGE] * 7, a
            if rid == 2:
                assert cached == full, a
                # The window's pages before its window are not kept, those inside are.
                assert w.pages[0] == strata.NO_PAGE and w.pages[(cached - 1) // PAGE] != \
                    strata.NO_PAGE, w
                inside = torch.arange(cached - WINDOW, cached)
                for b in range(2):
                    want = rows_of(prompt, inside, 0x10 + b, (4, 8)).bfloat16()
                    assert torch.equal(swa[b, 0, w.slots(cached - WINDOW, cached)], want)
                    for li in range(2):
                        want = rows_of(prompt, torch.arange(cached), 0x20 + 2 * b + li,
                                       (4, 8)).bfloat16()
                        assert torch.equal(kv[b, li, a.slots(0, cached)], want)
                for layer in range(2):
                    want = rows_of(prompt, torch.tensor([full - 1]), 0x30 + layer, (40,))[0]
                    assert torch.equal(state[layer, s], want), f"state of layer {layer}"
            else:
                assert cached == 0, a
            # The model's forward over [cached, n): K/V, the window, and the state at `full`.
            new = torch.arange(cached, n)
            for b in range(2):
                for li in range(2):
                    kv[b, li, a.slots(cached, n)] = rows_of(prompt, new, 0x20 + 2 * b + li,
                                                            (4, 8)).bfloat16()
                kept = new[torch.tensor([w.pages[t // PAGE] != strata.NO_PAGE for t in new],
                                        dtype=torch.bool)]  # the window's pages the pool keeps
                swa[b, 0, w.slots(cached, n)[kept - cached]] = rows_of(prompt, kept, 0x10 + b,
                                                                       (4, 8)).bfloat16()
            for layer in range(2):
                state[layer, s] = rows_of(prompt, torch.tensor([full - 1]), 0x30 + layer, (40,))[0]
            cache.insert(rid)
            cache.release(rid)
            cache.drain()
    print("python hybrid: ok (window and state pools over tensors)")


if __name__ == "__main__":
    main()
