"""Channel adapters: Vapi calls, Resend e-mail, Twilio SMS, and the sandbox."""
