from tests.harness import Harness


class InlineHarness(Harness):
    name = "inline"
    adapter = "inline"
    runs_elsewhere = False


HARNESS = InlineHarness()
