"""The A/B scripts' round order: both sides each round, the side going first alternating (so
neither always meets the machine in the state the other left it)."""


def alternated(rounds, before, after):
    """(round from 1, side name, binary) for each side of each round: before goes first in odd
    rounds, after in even ones."""
    for round_ in range(rounds):
        sides = [("before", before), ("after", after)]
        if round_ % 2:
            sides.reverse()
        for name, binary in sides:
            yield round_ + 1, name, binary
