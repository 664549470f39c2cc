"""Speed and memory benchmarks, measured side by side in one run (`python -m benchmarks.run`)."""
