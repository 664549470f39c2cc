"""4. data: clips per second for decode + preprocess (3 fps, 224 px) over the demo clips, with 1 and 2 workers."""

from __future__ import annotations

import os
import tempfile
import time

from modeling_affectverse.tiny import build_tiny_processor


def data_section() -> dict:
    """The collator's throughput on 48 generated demo clips."""
    from torch.utils.data import DataLoader

    from modeling_affectverse.data.collator import AffectVerseCollator, MediaOptions
    from modeling_affectverse.data.demo_data import generate_demo_dataset
    from modeling_affectverse.data.manifest import load_manifest

    with tempfile.TemporaryDirectory() as folder:
        manifest = generate_demo_dataset(folder, num_clips=48, seed=0, progress=False)["emotion"]
        rows = load_manifest(manifest, cache_dir=os.path.join(folder, "cache"))
        processor = build_tiny_processor()
        processor.frame_size = 224
        collator = AffectVerseCollator.for_prediction(processor, with_answer=True, media=MediaOptions(fps=3.0))
        result = {}
        for workers in (1, 2):
            loader = DataLoader(rows, batch_size=4, num_workers=workers, collate_fn=collator)
            start = time.perf_counter()
            count = sum(batch["input_ids"].shape[0] for batch in loader)
            result[f"clips_per_second_{workers}_workers"] = count / (time.perf_counter() - start)
        return result
