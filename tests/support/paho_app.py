"""What the tests' paho clients share: the proxy's answers on the auth topic
kept apart from the other messages, and SUBACK codes as numbers."""


def granted_codes(granted):
    """A SUBACK's codes as ints (paho 1.6 gives ReasonCodes for 5.0, ints for 3.1.1)."""
    return [getattr(g, "value", g) for g in granted]


class AuthAnswers:
    """Mixin with paho's on_message for an app: the proxy's answers on
    service/auth/... go to self.auth_answers (payload text), the rest to
    self.messages as (topic, payload text)."""

    def _on_message(self, client, userdata, m):
        if m.topic.startswith("service/auth"):
            self.auth_answers.put(m.payload.decode())
        else:
            self.messages.put((m.topic, m.payload.decode()))
