"""The distiller's rollout on an analytic toy student."""

import contextlib

import pytest
import torch

from arcflow.models.distiller import ArcFlowDistiller


def make(toy_student, k=4, **kw):
    cond = {"prompt_embeds": torch.zeros(4, 1, 1)}
    return ArcFlowDistiller(toy_student(k), latent_size=(2, 2), **kw), {
        "prompt_embeds": cond["prompt_embeds"]
    }


def test_rollout_is_reproducible_and_weighted(toy_student):
    distiller, data = make(toy_student, teacher_ratio_decay=10)
    first = distiller.rollout_losses(data, iteration=3)
    again = distiller.rollout_losses(data, iteration=3)
    other = distiller.rollout_losses(data, iteration=4)
    assert set(first) == {"loss_seg0", "loss_seg1"}
    for key in first:
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["loss_seg0"], other["loss_seg0"])


def test_a_few_iterations_lower_the_loss(toy_student):
    distiller, data = make(toy_student, teacher_ratio_decay=0)
    opt = torch.optim.Adam(distiller.parameters(), lr=0.05)

    def total(iteration):
        return sum(distiller.rollout_losses(data, iteration=iteration).values())

    before = total(0).item()
    for it in range(40):
        opt.zero_grad()
        total(it).backward()
        opt.step()
    after = sum(total(1000 + i).item() for i in range(5)) / 5
    assert after < 0.1 * before, (before, after)


def test_arcflow_beats_the_linear_shortcut_on_a_curved_teacher(toy_student):
    """The toy teacher bends exponentially: K = 4 with rates fits it, K = 1 cannot."""
    results = {}
    for k in (1, 4):
        torch.manual_seed(0)
        distiller, data = make(toy_student, k=k, teacher_ratio_decay=0)
        opt = torch.optim.Adam(distiller.parameters(), lr=0.05)
        for it in range(80):
            opt.zero_grad()
            sum(distiller.rollout_losses(data, iteration=it).values()).backward()
            opt.step()
        results[k] = sum(
            sum(distiller.rollout_losses(data, iteration=500 + i).values()).item() for i in range(5)
        )
    assert results[4] < 0.5 * results[1], results


def test_data_variant_runs_one_segment(toy_student):
    distiller, data = make(toy_student, mode="data")
    data["latents"] = torch.randn(4, 2, 2, 2)
    losses = distiller.rollout_losses(data, iteration=0)
    assert list(losses) == ["loss_seg0"]
    assert losses["loss_seg0"].requires_grad


def test_tiny_real_students_lower_the_loss_on_a_fixed_batch(tiny):
    """A few AdamW steps of the real distiller on tiny FLUX and Qwen-Image students."""
    for arch in ("flux", "qwen_image"):
        student = tiny.student(arch, num_components=4)
        distiller = ArcFlowDistiller(student, latent_size=(4, 4), teacher_ratio_decay=0)
        data = tiny.cond(arch, batch=2)
        params = [p for _, p in student.trainable_named_parameters()]
        opt = torch.optim.AdamW(params, lr=3e-3)

        def total(distiller=distiller, data=data):
            return sum(distiller.rollout_losses(data, iteration=0).values())

        before = total().item()
        for _ in range(12):
            opt.zero_grad()
            total().backward()
            opt.step()
        assert total().item() < 0.7 * before, (arch, before)


def test_data_variant_noise_takes_the_latents_size(toy_student):
    """Real latents of another size than ``latent_size`` (images at their own resolution)."""
    distiller, data = make(toy_student, mode="data")
    data["latents"] = torch.randn(4, 2, 3, 5)
    assert distiller.rollout_losses(data, iteration=0)["loss_seg0"].isfinite()


class RecordingWrapper:
    """The optimiser-wrapper calls ``train_step`` makes, recording the gradient it steps with."""

    def __init__(self, model):
        self.model, self.grads = model, None

    def optim_context(self, model):
        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def step(self):
        self.grads = [p.grad.clone() for p in self.model.parameters() if p.grad is not None]

    def zero_grad(self):
        self.model.zero_grad(set_to_none=True)


def test_micro_batches_accumulate_the_whole_batch_gradient(toy_student):
    """3 + 1 rows (uneven micro-batches) give the gradient and losses of the batch of 4."""
    results = {}
    for micro in (None, 3):
        torch.manual_seed(0)
        distiller, data = make(toy_student, micro_batch_size=micro, teacher_ratio_decay=10)
        wrapper = RecordingWrapper(distiller)
        results[micro] = distiller.train_step(data, wrapper), wrapper.grads
    (losses, grads), (micro_losses, micro_grads) = results[None], results[3]
    for key in ("loss_seg0", "loss_seg1", "loss"):
        torch.testing.assert_close(micro_losses[key], losses[key], rtol=1e-6, atol=0)
    for grad, micro_grad in zip(grads, micro_grads, strict=True):
        torch.testing.assert_close(micro_grad, grad, rtol=1e-5, atol=1e-8)


def test_compiled_student_gives_the_eager_losses_and_gradients(tiny):
    """``compile=True`` (torch.compile of the shared transformer, two graphs: teacher and
    student) computes what eager mode computes: the losses of a rollout and the gradients of every
    trainable tensor, to float32 rounding."""
    results = []
    for compile_ in (False, True):
        student = tiny.student("flux", num_components=4)
        tiny.randomize(student)  # a student away from its teacher: both graphs matter
        distiller = ArcFlowDistiller(
            student, latent_size=(4, 4), teacher_ratio_decay=4, compile=compile_
        )
        data = tiny.cond("flux", batch=2)
        losses = distiller.rollout_losses(data, iteration=1)
        sum(losses.values()).backward()
        grads = {n: p.grad.clone() for n, p in student.trainable_named_parameters()}
        results.append(({k: v.item() for k, v in losses.items()}, grads))
    (eager_losses, eager_grads), (compiled_losses, compiled_grads) = results
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
    assert eager_grads.keys() == compiled_grads.keys()
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
