"""The checkers of every lab's graded exercises: one module per lab, ``labNN.py``.

Each module registers its exercises with :func:`cloudlab.teaching.exercise.exercise`;
:func:`cloudlab.teaching.exercise.get_exercise` imports a lab's module the first
time one of its exercises is checked.
"""
