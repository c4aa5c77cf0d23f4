-- Certificate login: the serial of the certificate bound to a user.
ALTER TABLE users ADD COLUMN certificate_serial TEXT;
