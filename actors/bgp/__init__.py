"""Real BGP speakers for the writer. ``BirdSpeaker`` drives a BIRD 2 daemon."""

from .bird import BgpSessionStatus, BgpStatistics, BirdError, BirdSpeaker

__all__ = ["BgpSessionStatus", "BgpStatistics", "BirdError", "BirdSpeaker"]
