"""The operator's window (SDL2 through pygame): the live scene and a status bar.

Status bar: episode and step, who is in control (POLICY in blue, HUMAN in orange), successes so far, takeovers in
this episode, recording state, and the control and display rates. Frames are drawn only when they fit before the
next control step (``TeleopSession._pace``), so a slow display drops frames, never control steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robostack.teleop.devices import init_pygame

BAR = 64
POLICY_COLOR = (40, 110, 220)
HUMAN_COLOR = (240, 140, 20)


class TeleopWindow:
    def __init__(self, view_width: int, view_height: int, title: str) -> None:
        self.pg = init_pygame(video=True)
        pg = self.pg
        self.view = (view_width, view_height)
        self.width = max(view_width, 480)
        self.screen = pg.display.set_mode((self.width, view_height + BAR))
        pg.display.set_caption(title)
        self.font = pg.font.Font(None, 22)
        self.big = pg.font.Font(None, 30)

    def draw(self, frame: np.ndarray, status: Any) -> None:
        pg = self.pg
        self.screen.fill((20, 20, 20))
        surf = pg.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        self.screen.blit(surf, ((self.width - frame.shape[1]) // 2, 0))
        y = self.view[1]
        who, color = ("HUMAN", HUMAN_COLOR) if status.human else ("POLICY", POLICY_COLOR)
        pg.draw.rect(self.screen, color, pg.Rect(0, y, 120, BAR))
        self.screen.blit(self.big.render(who, True, (255, 255, 255)), (12, y + 20))
        line1 = (
            f"episode {status.episode}  step {status.step}  takeovers {status.takeovers}  "
            f"success {status.successes}/{status.committed}"
        )
        rec = {"recording": (220, 50, 50), "paused": (200, 200, 60)}.get(status.recording, (150, 150, 150))
        line2 = (
            f"{status.recording}   control {status.control_hz:.1f} Hz   display {status.display_hz:.1f} fps"
        )
        self.screen.blit(self.font.render(line1, True, (235, 235, 235)), (130, y + 10))
        self.screen.blit(self.font.render(line2, True, rec), (130, y + 32))
        if status.message:
            self.screen.blit(self.font.render(status.message, True, (255, 255, 255)), (10, 10))
        pg.display.flip()
        pg.event.pump()  # keeps the window responsive when no keyboard device drains its queue

    def save(self, path: str) -> None:
        self.pg.image.save(self.screen, path)

    def close(self) -> None:
        self.pg.display.quit()
