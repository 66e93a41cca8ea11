"""rewardlab's performance benchmarks: ``python -m benchmarks.run [--quick] [--out FILE]`` (see README.md)."""
