"""Plugin samplers that misbehave, for tests/samplers/test_plugins.py (imported by path)."""

import torch


class NoSelect:
    """Lacks select(): refused before any work."""

    needs_roi_losses = False


class RaisesAtThird:
    """Raises on its third select() call, during training."""

    needs_roi_losses = False
    needs_mining = False

    def __init__(self):
        self.calls = 0

    def select(self, rois, roi_losses, num, gen):
        self.calls += 1
        if self.calls == 3:
            raise ValueError("boom")
        return torch.arange(min(num, len(rois.labels)))


class OutOfRange(RaisesAtThird):
    """Answers a position past the image's RoIs."""

    def select(self, rois, roi_losses, num, gen):
        return torch.tensor([len(rois.labels)])


class BadInit:
    """Its constructor raises."""

    def __init__(self):
        raise OSError("no licence file")


class Twin_A(RaisesAtThird):  # noqa: N801 - the name collides with plugin_fixtures_Twin:A on purpose
    """Takes the first RoIs; its folder name is the one of ``plugin_fixtures_Twin:A``."""

    def select(self, rois, roi_losses, num, gen):
        return torch.arange(min(num, len(rois.labels)))


class ExitsInSelect(Twin_A):
    """Calls sys.exit(0) on its third select() call, as a careless script might."""

    def select(self, rois, roi_losses, num, gen):
        self.calls += 1
        if self.calls == 3:
            import sys

            sys.exit(0)
        return torch.arange(min(num, len(rois.labels)))


class PrintsInSelect(Twin_A):
    """Prints to stdout on every select() call."""

    def select(self, rois, roi_losses, num, gen):
        print("debug: select called")
        return torch.arange(min(num, len(rois.labels)))


class BoolMask(RaisesAtThird):
    """Answers a bool mask (which indexes as a mask, not as positions)."""

    def select(self, rois, roi_losses, num, gen):
        return torch.ones(len(rois.labels), dtype=torch.bool)


class Uint8(RaisesAtThird):
    """Answers uint8 positions (which index as a mask too)."""

    def select(self, rois, roi_losses, num, gen):
        return torch.tensor([0, 1], dtype=torch.uint8)


class LambdaState(RaisesAtThird):
    """Keeps a state that cannot be pickled."""

    def state_dict(self):
        return {"score": lambda x: x}


class ClassState(RaisesAtThird):
    """Keeps a class in its state: it saves, but a safe load refuses it."""

    def state_dict(self):
        return {"kind": RaisesAtThird}


class EveryRoITwenty(RaisesAtThird):
    """Answers every RoI twenty times over."""

    def select(self, rois, roi_losses, num, gen):
        return torch.arange(len(rois.labels)).repeat(20)


class SetsThreads(RaisesAtThird):
    """Sets torch's thread count to 1 on its first select()."""

    def select(self, rois, roi_losses, num, gen):
        torch.set_num_threads(1)
        return torch.arange(min(num, len(rois.labels)))


class DeclaresARegime(RaisesAtThird):
    """Declares the regime its reference runs it with: 16 RoIs per image, half foreground."""

    from ohemcli.samplers.regime import Regime

    regime = Regime(16, 0.5, (0.0, 0.5), "softmax CE", "chosen RoIs", "softmax", 0.05, None,
                    "a paper's appendix")  # fmt: skip
