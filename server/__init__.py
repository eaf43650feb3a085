"""The factory's Twisted server: upstream's HTTP API, on-demand builds, a registry frontend and TFTP.

It sits on top of `imagefactory` and runs builds through the same code in separate processes.
"""
