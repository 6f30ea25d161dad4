"""The communication table's arithmetic against the lowered program, and by hand."""

from bf_jax.bench import comm


def test_arithmetic_matches_the_lowered_program_for_every_scope():
  rows = comm.check(per_device=4, dim=16, positions=3)
  assert [case for case, _, _ in rows] == ["global", "8", "device", "2", "V2 global"]
  for scope, want, got in rows:
    assert want == got, scope
  assert rows[0][1] == 2 * 7 * 4 * 16 * 4  # global over 8 devices: 7 shards out, each way
  assert rows[1][1] == 2 * 1 * 4 * 16 * 4  # groups of 8 = 2 devices: 1 shard out
  assert rows[2][1] == rows[3][1] == 0
  # V2 tokens under remat: the backward pass gathers the keys again, a third pass.
  assert rows[4][1] == 3 * 7 * 4 * (3 * 16) * 4


def test_gather_devices_by_hand():
  assert comm.gather_devices("global", 32, 8) == 8
  assert comm.gather_devices("256", 32, 8) == 8  # 256 = the whole batch of 8 x 32
  assert comm.gather_devices("64", 32, 8) == 2
  assert comm.gather_devices("16", 32, 8) == 1  # groups inside a device
  assert comm.gather_devices("48", 32, 8) == 8  # straddling unevenly: gather all, mask
  assert comm.gather_devices("device", 32, 8) == 1
  assert comm.bytes_per_step(2048, 32, 8, "global") == 2 * 7 * 32 * 2048 * 2


def test_step_fraction_by_hand():
  """V1 global over 256 TPU v4 chips, 256 samples each: 2 x 255 x 256 x 2048 x 2 bytes at
  1.1e15 / 4096 B/s against 256 x 24.6 GFLOP at 275 TFLOP/s."""
  comm_s = 2 * 255 * 256 * 2048 * 2 / (1.1e15 / 4096)
  compute_s = 256 * 3 * 2 * 4.1e9 / 275e12
  got = comm.step_fraction("V1 ResNet-50 (C 2048)", 256, 256, "global", "TPU v4")
  assert abs(got - comm_s / (comm_s + compute_s)) < 1e-12
  assert comm.step_fraction("V1 ResNet-50 (C 2048)", 256, 256, "256", "TPU v4") == 0.0


def test_h100_bandwidth_drops_to_the_nic_across_nodes():
  """One node's 8 GPUs ring over NVLink (450 GB/s each way); beyond it, over one 400 Gb/s NIC a
  GPU, so the same traffic takes 9x longer."""
  assert comm.bandwidth("H100", 8) == 450e9
  assert comm.bandwidth("H100", 256) == 50e9
  assert comm.bandwidth("TPU v4", 2048) == 1.1e15 / 4096
  model = "V2 DeiT-S (197 x 384, 1 point)"
  comm_s = 3 * 255 * 64 * 197 * 384 * 2 / 50e9
  compute_s = 64 * 3 * 2 * 4.6e9 / 989e12
  got = comm.step_fraction(model, 64, 256, "global", "H100")
  assert abs(got - comm_s / (comm_s + compute_s)) < 1e-12
