"""The README's "an engine's loop in Python" (README.md, section Engines), run as a test: the code
between the markers is the README's snippet verbatim (checked below), then its results are checked.
Usage: readme_loop.py README.md"""

import sys

# readme-begin
import torch
import strata

kv = torch.zeros(2, 4, 1024, 8, 64, dtype=torch.bfloat16)  # K/V, layers, token slots, heads, dim
job = strata.Job()                                          # MPI (one rank here), the grid
cache = strata.Cache(job, model="my-model", page_size=16, device_tokens=1024, host_tokens=4096,
                     pools=[strata.Pool("kv", layers=4, buffers=2, tensor=kv)])
for rid, prompt in enumerate([list(range(100)), list(range(90)) + [7] * 30]):
    cache.step()                                            # one round, every loop
    a = cache.admit(rid, prompt)                            # prefix reused, pages for the rest
    cache.launch_loads()
    slots = a.slots(a.cached_tokens, len(prompt))           # where the new tokens' K/V go
    for layer in range(4):
        cache.wait_layer(rid, layer)                        # reused K/V of this layer is in kv
        kv[:, layer, slots] = torch.randn(2, len(slots), 8, 64).bfloat16()  # the model's K/V
    cache.insert(rid)
    cache.release(rid)
    print(f"request {rid}: {a.cached_tokens} of {len(prompt)} tokens reused")
# readme-end

assert a.cached_tokens == 80 and a.device_hit_tokens == 80, a  # the 5 full pages both share
snippet = open(__file__).read().split("# readme-begin\n")[1].split("# readme-end\n")[0]
assert snippet in open(sys.argv[1]).read(), "README.md's snippet differs from readme_loop.py"
cache.close()
job.close()
