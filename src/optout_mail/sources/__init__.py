"""Mail sources: where `RawMail` comes from (IMAP accounts, or local Maildir, mbox, .eml files)."""
