-- A key's spend budgets per UTC day and per UTC month, in pico-dollars
-- (10^-12 US$). NULL: no budget.
ALTER TABLE client_keys ADD COLUMN daily_budget_pico BIGINT;
ALTER TABLE client_keys ADD COLUMN monthly_budget_pico BIGINT;
