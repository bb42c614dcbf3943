"""The applications on top: the `gemstone` command line, REST serving, batch inference, drift checks,
Kubeflow compile/schedule and the ML Metadata queries they make.

They may import anything below them (pipeline/, components/, modules/, the
gemstone library); nothing below imports them.
"""
