"""The rootless imager: turns Talos release assets and extension images into boot assets.

One module per output kind; tools run through imagefactory.tools, never with privileges.
"""
