# The released distiller settings (docs/method.md, Distillation): data-free rollout over 2 student
# steps at 1024 x 1024, 4 intermediate states, window 3 of 128 substeps, policy dropout 0.1,
# loss x15.
model = dict(
    type="ArcFlowDistiller",
    nfe=2,
    timestep_ratio=1.0,
    imitation=dict(
        num_intermediate_states=4,
        window_substeps=3,
        total_substeps=128,
        policy_dropout=0.1,
        loss_scale=15.0,
        shift=3.2,
    ),
    latent_size=(128, 128),  # 1024 x 1024 pixels
    mode="data_free",
    seed=0,
)
