"""Rendering with VTK only (no Qt): the pictures the viewports show, usable offscreen.

* :mod:`.bridge`      -- Volume -> vtkImageData (zero copy), prop matrices placing voxels in LPS mm
* :mod:`.slice_view`  -- ``SliceView``: slice / slab / oblique MPR with window, overlays, measurements
* :mod:`.mpr`         -- ``MprController``: three linked SliceViews on one point, oblique rotation
* :mod:`.volume_view` -- ``VolumeView``: CPU or GPU ray casting chosen by the machine, presets
* :mod:`.presets`     -- window and volume-rendering presets as data
* :mod:`.offscreen`   -- offscreen windows, pixel capture, ``render_to_png`` for the CLI

Views never call ``Render()``: the owner of the render window does, once per batch of changes.
Submodules are imported explicitly so ``import workstation.render`` stays free of VTK.
"""
