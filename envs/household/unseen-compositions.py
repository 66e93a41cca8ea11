"""Hand-written reference reward for household/unseen-compositions (not LLM output).

The env's own reward is sparse (1 when the task's goal holds). This one pays, per step:
  progress = 10 * goal.progress          (0, 5 or 10 for a two-part task: the parts whose goal holds)
  in_room  = 0.2 * task.in_room           (share of the task's objects in the agent's room)
  near     = 0.3 * task.near              (close to one of the task's objects)
  held     = 0.5 * (task.held > 0)        (holds one of the task's objects)
The three small terms lead the agent toward the objects a task needs; the progress term dominates, so
finishing a part always pays more than hovering near objects.
"""

def compute_dense_reward(self, action):
    progress = 10.0 * self.goal.progress
    in_room = 0.2 * self.task.in_room
    near = 0.3 * self.task.near
    held = 0.5 * (self.task.held > 0)
    parts = {"progress": progress, "in_room": in_room, "near": near, "held": held}
    total = progress + in_room + near + held
    return total, parts
