"""The VTK classes the workstation uses, imported from their own kits.

``import vtk`` loads every kit VTK has (about a second on these machines); importing only the kits the
views need, plus the OpenGL back-ends that register the real implementations, halves the start-up cost.
Use it as ``from workstation.render import _vtk as vtk``.  A name not listed here still resolves, from
the full ``vtk`` package, so a new class costs start-up time but never breaks.
"""

# The back-ends: importing them registers the OpenGL overrides for the abstract classes below.
import vtkmodules.vtkInteractionStyle  # noqa: F401  (default interactor style for Qt widgets)
import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text actors)
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401
from vtkmodules.vtkCommonCore import (  # noqa: F401
    vtkCommand,
    vtkDataArray,
    vtkLookupTable,
    vtkMultiThreader,
    vtkPoints,
    vtkUnsignedCharArray,
)
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkImageData, vtkPiecewiseFunction, vtkPolyData  # noqa: F401
from vtkmodules.vtkCommonMath import vtkMatrix4x4  # noqa: F401
from vtkmodules.vtkImagingCore import vtkImageShrink3D  # noqa: F401
from vtkmodules.vtkIOImage import vtkPNGWriter  # noqa: F401
from vtkmodules.vtkRenderingAnnotation import vtkCornerAnnotation  # noqa: F401
from vtkmodules.vtkRenderingCore import (  # noqa: F401
    vtkActor2D,
    vtkColorTransferFunction,
    vtkCoordinate,
    vtkImageProperty,
    vtkImageSlice,
    vtkPolyDataMapper2D,
    vtkRenderer,
    vtkRenderWindow,
    vtkTextActor,
    vtkVolume,
    vtkVolumeProperty,
    vtkWindowToImageFilter,
)
from vtkmodules.vtkRenderingImage import vtkImageResliceMapper, vtkImageStack  # noqa: F401
from vtkmodules.vtkRenderingVolume import vtkFixedPointVolumeRayCastMapper, vtkGPUVolumeRayCastMapper  # noqa: F401


def __getattr__(name: str):
    import vtk

    return getattr(vtk, name)
