"""The embedded backend: moderngl on a standalone EGL context (Mesa llvmpipe on CPU, NVIDIA on GPU).

One draw per image: the background crop as a full-screen quad (alpha 0), then the object with
depth test (alpha 1), optionally multisampled; one RGBA readback gives the composited RGB and the
object mask (alpha > 0.5). Object pose: a canonical-frame vertex ``v`` lands at
``R @ (scale * v) + (x, y, z)`` in the camera frame (``R`` the matrix of the quaternion ``scene.rotation``),
and the camera frame maps to OpenGL eye space by flipping z, so a point projects exactly to
``u = W/2 + f x/z, v = H/2 - f y/z`` (docs/latents.md).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from latentzoo.errors import UserError
from latentzoo.latents import quaternion_to_matrix
from latentzoo.rendering import RenderSettings, Rendered
from latentzoo.rendering.backgrounds import load_backgrounds
from latentzoo.rendering.libraries import get_library
from latentzoo.rendering.library import ObjectLibrary
from latentzoo.rendering.sampler import Scene

NEAR, FAR = 0.05, 100.0

_OBJECT_VS = """
#version 330
uniform mat4 proj;
uniform mat4 model;
uniform mat3 rot;
in vec3 in_pos; in vec3 in_normal; in vec3 in_color; in vec2 in_uv;
out vec3 v_pos; out vec3 v_normal; out vec3 v_color; out vec2 v_uv;
void main() {
    vec4 p = model * vec4(in_pos, 1.0);
    v_pos = p.xyz; v_normal = rot * in_normal; v_color = in_color; v_uv = in_uv;
    gl_Position = proj * vec4(p.x, p.y, -p.z, 1.0);
}
"""

_OBJECT_FS = """
#version 330
uniform vec3 light_dir; uniform vec3 light_color; uniform vec3 tint; uniform float ambient;
uniform bool use_texture; uniform sampler2D tex;
in vec3 v_pos; in vec3 v_normal; in vec3 v_color; in vec2 v_uv;
out vec4 color;
void main() {
    vec3 view = normalize(-v_pos);
    vec3 n = length(v_normal) > 1e-6 ? normalize(v_normal) : view;
    if (dot(n, view) < 0.0) n = -n;  // two-sided lighting
    vec3 albedo = (use_texture ? texture(tex, v_uv).rgb : v_color) * tint;
    float diffuse = max(dot(n, light_dir), 0.0);
    float spec = 0.2 * pow(max(dot(n, normalize(light_dir + view)), 0.0), 32.0);
    color = vec4(albedo * (ambient + (1.0 - ambient) * diffuse * light_color) + spec * light_color, 1.0);
}
"""

_BACKGROUND_VS = """
#version 330
uniform vec3 rect;  // left, top, side in texture fractions
in vec2 in_xy;
out vec2 v_uv;
void main() {
    v_uv = vec2(rect.x + rect.z * (in_xy.x + 1.0) * 0.5, rect.y + rect.z * (1.0 - in_xy.y) * 0.5);
    gl_Position = vec4(in_xy, 0.0, 1.0);
}
"""

_BACKGROUND_FS = """
#version 330
uniform sampler2D tex;
in vec2 v_uv;
out vec4 color;
void main() { color = vec4(texture(tex, v_uv).rgb, 0.0); }
"""


def perspective(fov_deg: float, near: float = NEAR, far: float = FAR) -> np.ndarray:
    """OpenGL projection matrix for a square viewport and vertical field of view ``fov_deg``."""
    f = 1.0 / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0, 0, 0], [0, f, 0, 0],
                     [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
                     [0, 0, -1, 0]])


def _mat(m: np.ndarray) -> bytes:
    """Column-major float32 bytes of a matrix (GLSL layout)."""
    return np.ascontiguousarray(np.asarray(m, dtype=np.float32).T).tobytes()


def create_context():
    """A standalone EGL moderngl context, or a UserError saying why there is none."""
    import moderngl

    try:
        return moderngl.create_standalone_context(backend="egl")
    except Exception as e:  # noqa: BLE001 - any driver failure means the same thing to the user
        raise UserError(f"cannot create an EGL OpenGL context ({e}); install Mesa's libegl1/libgl1-mesa-dri") from e


class EmbeddedBackend:
    """Renders :class:`~latentzoo.rendering.sampler.Scene` s with moderngl (see module docstring)."""

    name = "embedded"

    def __init__(self, settings: RenderSettings, library: ObjectLibrary | None = None):
        """Open an EGL context for ``settings``; ``library`` overrides ``settings.library``."""
        import moderngl

        self.settings = settings
        self.library = library if library is not None else get_library(settings.library)
        self.backgrounds = load_backgrounds(settings.backgrounds)
        self.background_count = len(self.backgrounds)
        self.ctx = create_context()
        ctx, size = self.ctx, settings.size
        self._object = ctx.program(vertex_shader=_OBJECT_VS, fragment_shader=_OBJECT_FS)
        self._object["proj"].write(_mat(perspective(settings.fov_deg)))
        self._object["tex"].value = 0
        self._background = ctx.program(vertex_shader=_BACKGROUND_VS, fragment_shader=_BACKGROUND_FS)
        self._background["tex"].value = 0
        quad = ctx.buffer(np.array([-1, -1, 1, -1, -1, 1, 1, 1], dtype="f4").tobytes())
        self._quad = ctx.vertex_array(self._background, [(quad, "2f", "in_xy")])
        self._meshes: dict[int, tuple] = {}
        self._bg_textures: dict[int, object] = {}
        samples = min(int(settings.msaa), ctx.info["GL_MAX_SAMPLES"]) if settings.msaa > 1 else 0
        self._target = ctx.framebuffer(ctx.renderbuffer((size, size), 4), ctx.depth_renderbuffer((size, size)))
        self._draw = self._target if not samples else ctx.framebuffer(
            ctx.renderbuffer((size, size), 4, samples=samples),
            ctx.depth_renderbuffer((size, size), samples=samples))
        self._moderngl = moderngl

    def _mesh(self, identity: int) -> tuple:
        """(vertex array, texture or None) of an identity, uploaded on first use."""
        if identity not in self._meshes:
            m = self.library.mesh(identity)
            n = len(m.positions)
            colors = m.colors if m.colors is not None else np.full((n, 3), 0.7)
            uvs = m.uvs if m.uvs is not None else np.zeros((n, 2))
            data = np.hstack([m.positions, m.normals, colors, uvs]).astype("f4")
            vbo = self.ctx.buffer(data.tobytes())
            ibo = self.ctx.buffer(np.ascontiguousarray(m.faces, dtype="i4").tobytes())
            vao = self.ctx.vertex_array(self._object, [(vbo, "3f 3f 3f 2f", "in_pos", "in_normal", "in_color", "in_uv")],
                                        index_buffer=ibo)
            tex = None
            if m.texture is not None and m.uvs is not None:
                tex = self._texture(m.texture)
            self._meshes[identity] = (vao, tex)
        return self._meshes[identity]

    def _texture(self, image: np.ndarray):
        img = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        tex = self.ctx.texture((img.shape[1], img.shape[0]), 3, img.tobytes(), alignment=1)
        tex.build_mipmaps()
        tex.filter = (self._moderngl.LINEAR_MIPMAP_LINEAR, self._moderngl.LINEAR)
        return tex

    def _background_texture(self, index: int):
        if index not in self._bg_textures:
            self._bg_textures[index] = self._texture(self.backgrounds[index])
        return self._bg_textures[index]

    def draw(self, scene: Scene) -> bytes:
        """Draw ``scene`` and return the raw RGBA readback (H x W x 4 bytes, rows bottom to top)."""
        ctx = self.ctx
        self._draw.use()
        self._draw.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.disable(self._moderngl.DEPTH_TEST)  # the background writes no depth
        self._background_texture(scene.background % self.background_count).use(0)
        self._background["rect"].value = scene.crop
        self._quad.render(self._moderngl.TRIANGLE_STRIP)
        ctx.enable(self._moderngl.DEPTH_TEST)
        rot = quaternion_to_matrix(scene.rotation)
        model = np.eye(4)
        model[:3, :3] = rot * scene.scale
        model[:3, 3] = (scene.x, scene.y, scene.z)
        prog = self._object
        prog["model"].write(_mat(model))
        prog["rot"].write(_mat(rot))
        prog["light_dir"].value = scene.light_dir
        prog["light_color"].value = scene.light_color
        prog["tint"].value = scene.tint
        prog["ambient"].value = scene.ambient
        vao, tex = self._mesh(scene.identity)
        prog["use_texture"].value = tex is not None
        if tex is not None:
            tex.use(0)
        vao.render()
        if self._draw is not self._target:
            ctx.copy_framebuffer(self._target, self._draw)
        return self._target.read(components=4, alignment=1)

    def render(self, scene: Scene) -> Rendered:
        """Draw one scene: composited RGB, object mask and the scene's labels (rows top to bottom)."""
        raw, size = self.draw(scene), self.settings.size
        # Pillow flips and drops alpha in one C pass (faster than a strided numpy copy)
        rgb = np.asarray(Image.frombuffer("RGBA", (size, size), raw, "raw", "RGBA", 0, -1).convert("RGB"))
        alpha = np.frombuffer(raw, dtype=np.uint8).reshape(size, size, 4)[::-1, :, 3]
        return Rendered(rgb=rgb, mask=alpha > 127, latents=scene.latents(), extras=scene.extras())

    def close(self) -> None:
        self.ctx.release()
