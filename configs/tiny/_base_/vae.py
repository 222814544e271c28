# A tiny stack's VAE trained on freshly rendered scenes: L1 + L2 reconstruction (weighted towards
# the objects, decoded from the posterior mean) and a small KL. Stages set the arch and the seed.
_base_ = ["./runtime.py"]

model = dict(
    type="VAETrainer",
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
    dataset=dict(type="SceneDataset", split="train"),
)
