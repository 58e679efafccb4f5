"""Guests and service providers: access grants with schedules, invitations, keypad codes,
provider organisations and appointments, revocation, and each hub's shadow document."""
