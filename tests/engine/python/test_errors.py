"""Errors through the Python package: a bad declaration names the pool and the field (found by
Strata, or by the package for the tensors: dtype, shape, strides, device); bad request ids,
tokens and options raise strata.StrataError with its code and Strata's message."""

import torch

import strata
from kvmodel import DEVICE_TOKENS, HOST_TOKENS, PAGE, Engine, make_cache, serve, tokens_of


def raises(code: str, *needles: str):
    """Context: the block raises StrataError of `code` whose message has every needle."""

    class Check:
        def __enter__(self):
            return self

        def __exit__(self, kind, error, _tb):
            assert kind is not None, f"no error raised (wanted {code}: {needles})"
            assert isinstance(error, strata.StrataError), f"{kind.__name__}: {error}"
            assert error.code == code, f"code {error.code}, not {code}: {error}"
            for n in needles:
                assert n in str(error), f"'{n}' not in the message: {error}"
            return True

    return Check()


def kv_tensor(layers=3, rows=256, dtype=torch.bfloat16):
    return torch.zeros(2, layers, rows, 2, 8, dtype=dtype)


def tensor_checks() -> None:
    t = kv_tensor()
    with raises("invalid_argument", "pool 'kv'", "dtype 'f32'", "bf16"):
        strata.Pool("kv", layers=3, buffers=2, tensor=t, dtype="f32")
    with raises("invalid_argument", "pool 'kv'", "shape (2, 2, 256, 2, 8)", "layers=3"):
        strata.Pool("kv", layers=3, buffers=2, tensor=kv_tensor(layers=2))
    with raises("invalid_argument", "pool 'kv'", "row_bytes 64", "32 bytes"):
        strata.Pool("kv", layers=3, buffers=2, tensor=t, row_bytes=64)
    with raises("invalid_argument", "pool 'kv'", "not contiguous"):
        strata.Pool("kv", layers=3, buffers=2, tensor=t.transpose(3, 4))
    one_layer = torch.zeros(2, 1, 256, 2, 8, dtype=torch.bfloat16)
    with raises("invalid_argument", "pool 'kv'", "overlap"):  # three layers over the same bytes
        strata.Pool("kv", layers=3, buffers=2, tensor=one_layer.expand(2, 3, -1, -1, -1))
    with raises("invalid_argument", "pool 'idx'", "3 tensors", "buffers * layers = 2"):
        strata.Pool("idx", "sidecar", indices_of="kv", layers=[1, 2],
                    tensors=[torch.zeros(256, 20, dtype=torch.uint8)] * 3)
    with raises("invalid_argument", "pool 'idx'", "tensors[1]", "dtype"):
        strata.Pool("idx", "sidecar", indices_of="kv", layers=[1, 2],
                    tensors=[torch.zeros(256, 20, dtype=torch.uint8),
                             torch.zeros(256, 20, dtype=torch.int8)])
    with raises("invalid_argument", "pool 'kv'", "type 'paged'"):
        strata.Pool("kv", "paged", layers=3, row_bytes=32)
    with raises("invalid_argument", "pool 'kv'", "row_bytes is needed"):
        strata.Pool("kv", layers=3)
    # fp8 kept in byte tensors is accepted; f16 and fp16 name the same dtype.
    assert strata.Pool("k", layers=1, tensor=torch.zeros(1, 4, 8, dtype=torch.uint8),
                       dtype="fp8").row_bytes == 8
    assert strata.Pool("k", layers=1, tensor=torch.zeros(1, 4, 8, dtype=torch.float16),
                       dtype="fp16").dtype == "fp16"
    assert strata.Pool("k", layers=2, tensor=torch.zeros(2, 4, 8)).dtype == "f32"
    assert strata.dtype_tag(torch.bfloat16) == "bf16"


def cache_checks(job: strata.Job) -> None:
    engine = Engine()
    # Found by Strata: the pool and the field.
    pools = engine.pools()
    pools[1].indices_of = "nowhere"
    with raises("invalid_argument", "pool 'idx'", "nowhere"):
        strata.Cache(job, model="python-test-model", pools=pools, page_size=PAGE,
                     device_tokens=DEVICE_TOKENS, host_tokens=HOST_TOKENS)
    with raises("invalid_argument", "prefetch policy", "sometimes"):
        make_cache(job, engine, prefetch_policy="sometimes")
    with raises("invalid_argument", "copy path", "fastest"):
        make_cache(job, engine, copy_path="fastest")
    with raises("invalid_argument", "host layout", "diagonal"):
        make_cache(job, engine, host_layout="diagonal")
    with raises("invalid_argument", "prefetch_threshold_tokens"):
        make_cache(job, engine, prefetch_threshold_tokens=-1)
    with raises("invalid_argument", "pool 'kv'", "rows"):
        strata.Cache(job, model="python-test-model", pools=engine.pools(), page_size=PAGE,
                     device_tokens=2 * DEVICE_TOKENS, host_tokens=HOST_TOKENS)
    # Found by the package: a declared set needs a name; where the tensors are against the back
    # end.
    with raises("invalid_argument", "model is needed with declared pools"):
        strata.Cache(job, pools=engine.pools())
    with raises("invalid_argument", "device_tokens must be a non-negative int, not -1"):
        strata.Cache(job, model="python-test-model", pools=engine.pools(), device_tokens=-1)
    with raises("invalid_argument", "pool 'kv'", "backend 'cuda' needs CUDA tensors"):
        strata.Cache(job, model="python-test-model", pools=engine.pools(), page_size=PAGE,
                     device_tokens=DEVICE_TOKENS, host_tokens=HOST_TOKENS, backend="cuda")
    meta = strata.Pool("kv", layers=3, buffers=2, tensor=kv_tensor().to("meta"))
    with raises("invalid_argument", "pool 'kv'", "meta", "backend 'cpu' needs CPU tensors"):
        strata.Cache(job, model="python-test-model", pools=[meta], page_size=PAGE,
                     device_tokens=DEVICE_TOKENS, host_tokens=HOST_TOKENS)
    with raises("invalid_argument", "back end 'tpu'"):
        strata.Cache(job, model="python-test-model", pools=engine.pools(), page_size=PAGE,
                     device_tokens=DEVICE_TOKENS, host_tokens=HOST_TOKENS, backend="tpu")

    cache = make_cache(job, engine)
    tokens = tokens_of(7, 3 * PAGE)
    serve(cache, engine, 1, tokens)
    for call in (cache.release, cache.insert):
        try:
            call(424242)
        except strata.StrataError as e:
            assert e.code in ("not_found", "invalid_argument", "failed_precondition"), e
            assert "424242" in str(e), f"the message does not name the request: {e}"
        else:
            raise AssertionError(f"{call.__name__} of an unknown request raised nothing")
    with raises("invalid_argument", "request id -1"):
        cache.admit(-1, tokens)
    with raises("invalid_argument", "tokens: 2 dimensions"):
        cache.admit(2, [tokens, tokens])
    with raises("invalid_argument", "tokens: a tensor of torch.float32"):
        cache.match(torch.zeros(5))
    with raises("invalid_argument", "outside int32"):
        cache.match([1, 2**40])
    assert cache.match([]) == 0
    cache.close()
    with raises("failed_precondition", "closed"):
        cache.step()
    cache.close()  # closing twice is fine


def job_checks() -> None:
    with raises("invalid_argument", "tp 0"):
        strata.Job(tp=0)
    with raises("invalid_argument", "remote 'sometimes'"):
        strata.Job(remote="sometimes")
    with raises("invalid_argument", "agree_min needs rank and world_size"):
        strata.Job(agree_min=lambda t: None)
    with raises("invalid_argument", "comm must be an mpi4py communicator"):
        strata.Job(comm=42)


def main() -> None:
    tensor_checks()
    job_checks()
    with strata.Job() as job:
        assert job.place.world_size == 1 and job.place.tp_size == 1, job.place
        cache_checks(job)
    print("python errors: ok")


if __name__ == "__main__":
    main()
