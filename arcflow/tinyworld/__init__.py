"""The tiny world: procedural captioned scenes and the CPU-sized FLUX / Qwen-Image stacks trained
on them, so that every part of ArcFlow runs and is measured on a laptop.

- :mod:`~arcflow.tinyworld.scenes`: the scenes, their captions and the held-out split;
- :mod:`~arcflow.tinyworld.architectures`: the tiny architectures and constants, and the named
  transformer sizes configs use (``from_config="tiny"``, ``"toy"``, ``"benchmark"``);
- :mod:`~arcflow.tinyworld.stack`: tokenizers, text encoders, VAEs, and the diffusers folders;
- :mod:`~arcflow.tinyworld.scene_latents`, :mod:`~arcflow.tinyworld.datasets`: the datasets
  configs name (``SceneDataset``, ``SceneLatentDataset``, ``ScenePromptDataset``);
- :mod:`~arcflow.tinyworld.flow_matching`, :mod:`~arcflow.tinyworld.vae_trainer`: the trainers
  of the teachers (``FlowMatchingTrainer``) and of the VAEs (``VAETrainer``);
- :mod:`~arcflow.tinyworld.evaluator`, :mod:`~arcflow.tinyworld.scoring`: the attribute evaluator
  and the caption match and FID space it gives the evaluation harness;
- :mod:`~arcflow.tinyworld.caption_probe`: which caption words a teacher reads, per noise level.

It builds on the rest of the package; nothing in ``arcflow.flow``, ``models``, ``engine`` or
``pipelines`` imports it, and the registries do not name it: its configs import the modules
whose names they use (``custom_imports``), the entry scripts :mod:`~arcflow.tinyworld.presets`
(``--preset tiny``). The package itself imports nothing, so that ``--help`` stays instant.
"""
