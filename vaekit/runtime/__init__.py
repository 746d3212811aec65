"""Where and how the work runs, below training and evaluation: the device (device.py), the
floating-point precision (precision.py), the CPU allocator (allocator.py), the memory check
(memory.py) and distributed data parallel (dist.py). Import the modules themselves."""
