"""The emulated engine: the strict one, and the one that works everywhere.

``machine`` runs a validated program under unicorn (``Machine``), on the
guest memory of ``memory``; ``guard`` is the C block hook that checks every
executed block starts on an instruction boundary the validator saw and
charges deterministic fuel; ``jail`` is ZeroVM's Jail (code validated and
made executable at run time); ``snapshot`` records and resumes start-up
prefixes.  See doc/sandbox.md ("Engines").
"""
