from tests.harness import Harness


class InlineHarness(Harness):
    name = "inline"
    backend = "inline"
    runs_elsewhere = False


HARNESS = InlineHarness()
