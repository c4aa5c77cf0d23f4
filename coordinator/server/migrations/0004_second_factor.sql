-- Second factors: TOTP (sealed secret, last accepted step) or SMS codes (hashed, expiring).
ALTER TABLE users ADD COLUMN second_factor TEXT NOT NULL DEFAULT 'none';
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN last_totp_step BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN phone TEXT;
ALTER TABLE users ADD COLUMN sms_code_hash TEXT;
ALTER TABLE users ADD COLUMN sms_code_expires BIGINT NOT NULL DEFAULT 0;
