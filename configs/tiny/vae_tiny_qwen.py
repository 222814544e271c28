# The tiny Qwen-Image stack's AutoencoderKLQwenImage (64x64 RGB -> 16x16x16): L1 + L2
# reconstruction (weighted towards the objects, decoded from the posterior mean) and a small KL on
# freshly rendered training scenes. tools/build_tiny_world.py exports its EMA weights, with the
# measured latent scale, into checkpoints/tiny-qwen/vae/.
_base_ = ["./_tiny_runtime.py"]

model = dict(
    type="VAETrainer",
    arch="qwen_image",
    l1_weight=1.0,
    l2_weight=1.0,
    kl_weight=1e-4,
    sample_posterior=False,
    object_weight=4.0,
)
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type="InfiniteSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type="SceneDataset", split="train", seed=2),
)
