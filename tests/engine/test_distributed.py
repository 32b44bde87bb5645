"""DDP helpers under a real two-process gloo group, and the per-rank image schedule."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ohemcli.data.batching import ScheduleSampler
from ohemcli.engine.distributed import DistInfo, average_gradients, broadcast_parameters


def _worker(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    info = DistInfo(rank=rank, world_size=2)
    torch.manual_seed(rank)  # different weights per rank until broadcast
    model = nn.Linear(3, 1)
    broadcast_parameters(model, info)
    x = torch.full((1, 3), float(rank + 1))  # rank 0 sees 1s, rank 1 sees 2s
    model(x).sum().backward()
    average_gradients(model, info)
    torch.save({"weight": model.weight.detach(), "grad": model.weight.grad}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_gradients_are_averaged_and_weights_broadcast(tmp_path):
    out = str(tmp_path / "r")
    mp.spawn(_worker, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
    r0, r1 = (torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1))
    assert torch.equal(r0["weight"], r1["weight"])
    # d(sum(w.x))/dw = x: the mean of 1s and 2s is 1.5 on both ranks
    assert torch.allclose(r0["grad"], torch.full((1, 3), 1.5))
    assert torch.allclose(r1["grad"], r0["grad"])


def test_ranks_draw_disjoint_images_and_cover_the_single_process_order():
    single = [b for b in ScheduleSampler(10, 2, seed=1, start_iter=0, iters=5, flip=True)]
    flat = [k for batch in single for k in batch]
    ranks = [list(ScheduleSampler(10, 1, 1, 0, 5, True, rank=r, world_size=2)) for r in (0, 1)]
    # Iteration t of rank r takes position 2t + r of the same stream the single process uses.
    merged = [k for t in range(5) for r in (0, 1) for k in ranks[r][t]]
    assert merged == flat
    assert sorted(i for i, _ in flat) == list(range(10))  # one epoch: every image once


def test_resumed_schedule_continues_where_it_stopped():
    full = list(ScheduleSampler(7, 2, seed=4, start_iter=0, iters=9, flip=True))
    tail = list(ScheduleSampler(7, 2, seed=4, start_iter=5, iters=9, flip=True))
    assert tail == full[5:]


def test_gradients_go_in_buckets_of_one_dtype_up_to_the_size_in_order():
    from ohemcli.engine.distributed import gradient_buckets

    f32 = [torch.zeros(10), torch.zeros(10), torch.zeros(30), torch.zeros(5, dtype=torch.float64)]
    # 40 bytes each for the first two, 120 for the third (over the 100-byte bucket: its own)
    assert gradient_buckets(f32, bucket_bytes=100) == [[0, 1], [2], [3]]
    assert gradient_buckets(f32, bucket_bytes=10**6) == [[0, 1, 2], [3]]  # a dtype change splits
    assert gradient_buckets([]) == []
